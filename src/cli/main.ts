#!/usr/bin/env node
// src/cli/ owns the `chronos` command: argument parsing and the subcommands (serve, check, next, jobs,
// emulator, dev). Like main.ts it composes the other folders; nothing imports it.
// `chronos <command>`: each command is loaded on demand so `serve` pays only for the server.
import { errorMessage, isChronosError } from '../errors.js';
import { VERSION } from '../version.js';
import { type CliIo, EXIT_FAILURE, EXIT_USAGE, processIo, UsageError, usageErrorFrom } from './common.js';

const HELP = `Usage: chronos <command> [options]

Commands:
  serve       run the Chronos server (configuration from the environment; see .env.example)
  check       validate the configuration and the jobs file; print when each job will fire
  next        print the next occurrences of a schedule string
  status      the state of a running server in words: provider, NAS, next fires, failing jobs
  jobs        list, add, edit, remove, pause, resume and run jobs, and show what runs printed
  store       copy a data directory into a PostgreSQL database (chronos store copy --from DIR --to URL)
  emulator    run the local NAS emulator
  dev         run the whole scale-to-zero loop locally: emulator, wake proxy, Chronos, sample jobs
  help        show this help, or a command's: chronos help <command>

Options:
  --version   print the version
  -h, --help  this text

Run "chronos help <command>" or "chronos <command> --help" for a command's options.`;

const SERVE_USAGE = `Usage: chronos serve

Runs the server. Configuration comes from the environment (see .env.example); a configuration
or jobs-file problem is printed and the process exits with code 1.`;

type Command = (argv: string[], io: CliIo) => Promise<number | undefined>;

const COMMANDS: Record<string, { run: () => Promise<Command>; usage: () => Promise<string> }> = {
  serve: {
    run: async () => async (argv) => {
      if (argv.length > 0) throw new UsageError(`takes no arguments, got "${argv.join(' ')}"`);
      const { serve } = await import('../main.js');
      await serve();
      // The server keeps the process alive; its exit code is decided by shutdown.
      return undefined;
    },
    usage: async () => SERVE_USAGE,
  },
  check: {
    run: async () => (await import('./check.js')).runCheck,
    usage: async () => (await import('./check.js')).CHECK_USAGE,
  },
  next: {
    run: async () => (await import('./next.js')).runNext,
    usage: async () => (await import('./next.js')).NEXT_USAGE,
  },
  status: {
    run: async () => (await import('./status.js')).runStatus,
    usage: async () => (await import('./status.js')).STATUS_USAGE,
  },
  jobs: {
    run: async () => (await import('./jobs.js')).runJobs,
    usage: async () => (await import('./jobs.js')).JOBS_USAGE,
  },
  store: {
    run: async () => (await import('./store.js')).runStore,
    usage: async () => (await import('./store.js')).STORE_USAGE,
  },
  emulator: {
    run: async () => {
      const { runEmulatorCli } = await import('../emulator/cli.js');
      return async (argv) => {
        await runEmulatorCli(argv);
        return undefined;
      };
    },
    usage: async () => (await import('../emulator/cli.js')).EMULATOR_USAGE,
  },
  dev: {
    run: async () => {
      const { runDevLoop } = await import('../emulator/dev-loop.js');
      return async (argv) => {
        await runDevLoop(argv);
        return undefined;
      };
    },
    usage: async () => (await import('../emulator/dev-loop.js')).DEV_LOOP_USAGE,
  },
};

const wantsHelp = (argv: string[]) => argv.includes('--help') || argv.includes('-h');

async function main(argv: string[]): Promise<number | undefined> {
  const [command, ...rest] = argv;
  switch (command) {
    case undefined:
    case '--help':
    case '-h':
      processIo.out(HELP);
      return 0;
    case '--version':
    case '-V':
    case 'version':
      processIo.out(`chronos ${VERSION}`);
      return 0;
    case 'help': {
      const [topic, ...extra] = rest;
      if (topic === undefined) {
        processIo.out(HELP);
        return 0;
      }
      const entry = COMMANDS[topic];
      if (!entry || extra.length > 0) {
        const why = entry ? `takes one command, got "${rest.join(' ')}"` : `unknown command "${topic}"`;
        process.stderr.write(`chronos help: ${why}\n\n${HELP}\n`);
        return EXIT_USAGE;
      }
      processIo.out(await entry.usage());
      return 0;
    }
    default: {
      const entry = COMMANDS[command];
      if (!entry) {
        process.stderr.write(`chronos: unknown command "${command}"\n\n${HELP}\n`);
        return EXIT_USAGE;
      }
      // Every command answers --help the same way, before any of its own parsing.
      if (wantsHelp(rest)) {
        processIo.out(await entry.usage());
        return 0;
      }
      try {
        return await (await entry.run())(rest, processIo);
      } catch (err) {
        // One shape for every wrong command line: "chronos <command>: …", exit 2.
        const usage =
          err instanceof UsageError
            ? err
            : (usageErrorFrom(err) ??
              (isChronosError(err, 'invalid_config') && err.details?.['usage'] === true
                ? new UsageError(err.message)
                : undefined));
        if (usage) {
          process.stderr.write(
            `chronos ${command}: ${usage.message}\nRun "chronos help ${command}" for usage.\n`,
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
  process.stderr.write(`chronos: ${errorMessage(err)}\n`);
  process.exitCode = EXIT_FAILURE;
}
