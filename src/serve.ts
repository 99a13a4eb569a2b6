// The production entry (container CMD): `node dist/serve.js`.
import { serve } from './main.js';

await serve();
