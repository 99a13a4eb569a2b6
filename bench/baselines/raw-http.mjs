// Cold-start floor: a raw node:http server that answers one POST like the fire route would (202 + JSON).
import { createServer } from 'node:http';

const server = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(202, { 'content-type': 'application/json' });
    res.end('{"status":"accepted"}');
  });
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
// A normal exit on SIGTERM lets Node write its compile cache when one is configured (Node 22+).
process.on('SIGTERM', () => process.exit(0));
