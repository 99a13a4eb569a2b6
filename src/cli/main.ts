#!/usr/bin/env node
// `chronos <command>`: each command is loaded on demand so `serve` pays only for the server.
import { type CliIo, EXIT_FAILURE, EXIT_USAGE, processIo, UsageError } from './common.js';

const HELP = `Usage: chronos <command> [options]

Commands:
  serve       run the Chronos server (configuration from the environment; see .env.example)
  check       validate the configuration and the jobs file; print when each job will fire
  next        print the next occurrences of a schedule string
  jobs        list, add, remove, pause, resume and run jobs of a running server (admin API)
  emulator    run the local NAS emulator
  dev         run the whole scale-to-zero loop locally: emulator, wake proxy, Chronos, sample jobs
  help        show this help

Run "chronos <command> --help" for a command's options.`;

const SERVE_USAGE = `Usage: chronos serve

Runs the server. Configuration comes from the environment (see .env.example); a configuration
or jobs-file problem is printed and the process exits with code 1.`;

type Command = (argv: string[], io: CliIo) => Promise<number>;

const COMMANDS: Record<string, () => Promise<Command>> = {
  check: async () => (await import('./check.js')).runCheck,
  next: async () => (await import('./next.js')).runNext,
  jobs: async () => (await import('./jobs.js')).runJobs,
};

async function main(argv: string[]): Promise<number | undefined> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve': {
      if (rest.includes('--help') || rest.includes('-h')) {
        console.log(SERVE_USAGE);
        return 0;
      }
      if (rest.length > 0) throw new UsageError(`chronos serve takes no arguments, got "${rest.join(' ')}"`);
      const { serve } = await import('../main.js');
      await serve();
      // The server keeps the process alive; its exit code is decided by shutdown.
      return undefined;
    }
    case 'emulator': {
      const { runEmulatorCli } = await import('../emulator/cli.js');
      await runEmulatorCli(rest);
      return undefined;
    }
    case 'dev': {
      const { runDevLoop } = await import('../emulator/dev-loop.js');
      await runDevLoop(rest);
      return undefined;
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(HELP);
      return 0;
    default: {
      const load = COMMANDS[command];
      if (!load) {
        process.stderr.write(`chronos: unknown command "${command}"\n\n${HELP}\n`);
        return EXIT_USAGE;
      }
      const run = await load();
      try {
        return await run(rest, processIo);
      } catch (err) {
        if (err instanceof UsageError) {
          process.stderr.write(
            `chronos ${command}: ${err.message}\nRun "chronos ${command} --help" for usage.\n`,
          );
          return EXIT_USAGE;
        }
        throw err;
      }
    }
  }
}

try {
  const code = await main(process.argv.slice(2));
  if (code !== undefined) process.exitCode = code;
} catch (err) {
  if (err instanceof UsageError) {
    process.stderr.write(`chronos: ${err.message}\n`);
    process.exitCode = EXIT_USAGE;
  } else {
    process.stderr.write(`chronos: ${(err as Error).message}\n`);
    process.exitCode = EXIT_FAILURE;
  }
}
