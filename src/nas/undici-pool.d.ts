// undici's index loads fetch, WebSocket, caches, mock agents and more; the NAS client needs only Pool
// and the request() helper (the index mixes it into Dispatcher.prototype). Importing the two modules
// directly halves the size of the NAS chunk. undici ships no exports map, so the deep paths resolve;
// these declarations give them the package's own types. The http-client tests load the real modules,
// so an undici upgrade that moves them fails the suite instead of production.
declare module 'undici/lib/dispatcher/pool.js' {
  import type { Pool } from 'undici';

  const PoolClass: typeof Pool;
  export default PoolClass;
}

declare module 'undici/lib/api/api-request.js' {
  import type { Dispatcher } from 'undici';

  function request(this: Dispatcher, options: Dispatcher.RequestOptions): Promise<Dispatcher.ResponseData>;
  export default request;
}
