/** A growable Float64 column: rows are appended without per-row objects. */
export class Float64Column {
  private data = new Float64Array(1 << 16);
  length = 0;

  push(value: number): void {
    if (this.length === this.data.length) {
      const bigger = new Float64Array(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    this.data[this.length++] = value;
  }

  /** The filled part (a view: no copy). */
  values(): Float64Array {
    return this.data.subarray(0, this.length);
  }
}
