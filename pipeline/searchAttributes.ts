/**
 * Search attributes of a pipeline run, registered on the server by `wmss server` (and by the
 * test environments), so the Web UI's run list can be filtered by run, step, status and model.
 */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

export const WmssRunName = defineSearchAttributeKey('WmssRunName', SearchAttributeType.KEYWORD);
/** The steps running now, e.g. "0,1,4" (the original's numbering); empty when none. */
export const WmssStep = defineSearchAttributeKey('WmssStep', SearchAttributeType.KEYWORD);
export const WmssStatus = defineSearchAttributeKey('WmssStatus', SearchAttributeType.KEYWORD);
export const WmssBaseModel = defineSearchAttributeKey('WmssBaseModel', SearchAttributeType.KEYWORD);

export const SEARCH_ATTRIBUTES = [WmssRunName, WmssStep, WmssStatus, WmssBaseModel];

export type RunStatus = 'running' | 'completed' | 'failed' | 'cancelled';

/** Set by the server on runs a Schedule starts (also by `trigger` and `backfill`); read, never set, by wmss-flow. */
export const TemporalScheduledStartTime = defineSearchAttributeKey(
  'TemporalScheduledStartTime',
  SearchAttributeType.DATETIME,
);
export const TemporalScheduledById = defineSearchAttributeKey('TemporalScheduledById', SearchAttributeType.KEYWORD);
