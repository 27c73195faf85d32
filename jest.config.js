/** Three suites: unit (pure + local files), workflow (time-skipping env), integration (real dev server). */
const transform = {
  '^.+\\.(t|j)sx?$': [
    '@swc/jest',
    { jsc: { parser: { syntax: 'typescript' }, target: 'es2022' }, module: { type: 'commonjs' } },
  ],
};
const project = (name, extra = {}) => ({
  displayName: name,
  testEnvironment: 'node',
  transform,
  roots: [`<rootDir>/test/${name}`],
  testMatch: ['**/*.test.ts'],
  moduleFileExtensions: ['ts', 'js', 'json'],
  ...extra,
});

module.exports = {
  projects: [
    project('unit'),
    project('workflow'),
    project('integration', { globalSetup: '<rootDir>/testkit/integrationSetup.ts' }),
  ],
};
