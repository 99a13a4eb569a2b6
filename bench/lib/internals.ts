// What the benchmarks need beyond the package's public surface (src/index.ts): the store, the claim and
// job building, to seed data directories and to time claims. Bundled by bench/lib/common.mjs
// (importInternals) with the production build's options; never part of dist/.
export { buildJob } from '../../src/jobs/build.js';
export { claimOccurrence } from '../../src/occurrence/claim.js';
export { FileStore } from '../../src/store/file-store.js';
export { currentOwner } from '../../src/store/owner.js';
