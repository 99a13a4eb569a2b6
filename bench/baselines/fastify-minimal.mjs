// Cold-start reference: the smallest useful Fastify app (defaults, no logger, one POST route),
// bundled by the bench with the production build's esbuild options.
import Fastify from 'fastify';

const app = Fastify();
app.post('/api/cron/fire', async (_request, reply) => reply.code(202).send({ status: 'accepted' }));
await app.listen({ port: 0, host: '127.0.0.1' });
process.stdout.write(`listening ${app.server.address().port}\n`);
// A normal exit on SIGTERM lets Node write its compile cache when one is configured (Node 22+).
process.on('SIGTERM', () => process.exit(0));
