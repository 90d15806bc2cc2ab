// A real `agentshare serve` for the Node client suites (node, grpcweb): a
// fresh data dir, a port the OS picks, the address read from its stderr, a
// wait until the services a suite calls are SERVING, session tokens minted
// by `agentshare token`, and a kill and cleanup at the end.
//
// Or a gateway that already runs (deploy/local/up): AGENTSHARE_GATEWAY
// names its address and AGENTSHARE_KEYS_DIR the keys dir `agentshare token`
// signs with. Nothing is started or stopped then, and since every suite of a
// run shares that server, each user (IdP subject) and email gets this run's
// tag (`alice` → `alice-<tag>`, `alice@example.com` →
// `alice-<tag>@example.com`; a suite that names a user's email itself asks
// `email()`), so no two runs or suites meet the same user.
//
// How a suite reaches the server, and so how it asks for health, is its
// own: a suite extends ServeProcess with `connect` and `serving`. Only Node
// built-ins here, so each suite imports this file by its relative path
// whatever its own node_modules hold.

import { execFileSync, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import assert from 'node:assert/strict';

const SERVING_LINE = /agentshare is serving on (\S+:\d+) \(data dir /;
const START_WITHIN_MS = 30_000;
export const CALL_TIMEOUT_MS = 15_000;
// The gateway of a running topology, if the suites target one.
const EXTERNAL_GATEWAY = process.env.AGENTSHARE_GATEWAY ?? '';
// This run's tag for user names and emails on a shared server.
const RUN_TAG = process.env.AGENTSHARE_RUN_TAG || randomUUID().replaceAll('-', '').slice(0, 10);

// Every public service of the gateway, by the name a caller gives it; the
// gateway reports each SERVING once its backend does.
export const PUBLIC_SERVICES = {
  tenancy: 'agentshare.sharing.v1.TenancyService',
  sharing: 'agentshare.sharing.v1.SharingService',
  connections: 'agentshare.sharing.v1.ConnectionsService',
  access: 'agentshare.sharing.v1.AccessService',
  registry: 'agentshare.registry.v1.AgentRegistryService',
  store: 'agentshare.store.v1.WorkspaceStoreService',
  sessions: 'agentshare.store.v1.SessionsService',
  usage: 'agentshare.store.v1.UsageService',
  automations: 'agentshare.scheduler.v1.AutomationsService',
  invoke: 'agentshare.gateway.v1.InvokeService',
};

/**
 * `agentshare serve` on a fresh data dir and a port the OS picks. A suite
 * extends it with `connect()`, called once `this.address` is known, and
 * `serving(service)`, a promise of whether grpc.health.v1.Health/Check
 * answers SERVING for `service` ('' for the server; false while it cannot
 * be reached).
 */
export class ServeProcess {
  /**
   * Starts the server (with the arguments of the suite's constructor after
   * the binary) and waits until it and each of `this.services` are SERVING;
   * a server that does not is stopped and its last lines thrown.
   */
  static async start(...args) {
    const binary = process.env.AGENTSHARE_BIN;
    assert.ok(binary, 'set AGENTSHARE_BIN to the agentshare binary (tests/clients/run does)');
    const server = new this(binary, ...args);
    try {
      server.address = server.external ? EXTERNAL_GATEWAY : await server.#address();
      server.connect();
      await server.#waitServing();
    } catch (error) {
      await server.stop();
      throw error;
    }
    return server;
  }

  /** `name` goes into the data dir's name; `services` (name to full name)
   * are the ones to wait for, and the ones a suite's callers reach. */
  constructor(binary, { name, services = PUBLIC_SERVICES }) {
    this.binary = binary;
    this.services = services;
    this.lines = [];
    this.external = EXTERNAL_GATEWAY !== '';
    if (this.external) {
      assert.ok(process.env.AGENTSHARE_KEYS_DIR, 'AGENTSHARE_GATEWAY needs AGENTSHARE_KEYS_DIR, the keys dir of that topology');
      return;
    }
    this.dataDir = mkdtempSync(path.join(tmpdir(), `agentshare-${name}-`));
    this.process = spawn(binary, ['serve', '--data-dir', this.dataDir, '--listen', '127.0.0.1:0'], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, AGENTSHARE_SHUTDOWN_DELAY_MILLIS: '0' },
    });
    this.exited = new Promise((resolve) => this.process.once('exit', (code, signal) => resolve(code ?? signal)));
    this.stderr = readline.createInterface({ input: this.process.stderr });
    this.stderr.on('line', (line) => this.lines.push(line));
  }

  connect() {}

  async serving(_service) {
    throw new Error('a suite extends ServeProcess with serving(service)');
  }

  #address() {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no serving line within ${START_WITHIN_MS} ms:\n${this.log()}`)),
        START_WITHIN_MS,
      );
      const seen = (line) => {
        const match = SERVING_LINE.exec(line);
        if (match) {
          clearTimeout(timer);
          this.stderr.off('line', seen);
          resolve(match[1]);
        }
      };
      this.stderr.on('line', seen);
      this.exited.then((how) => {
        clearTimeout(timer);
        reject(new Error(`agentshare serve exited (${how}) before serving:\n${this.log()}`));
      });
    });
  }

  async #waitServing() {
    const deadline = Date.now() + START_WITHIN_MS;
    for (const service of ['', ...Object.values(this.services)]) {
      while (!(await this.serving(service))) {
        if (Date.now() > deadline) throw new Error(`${service || 'the server'} not SERVING:\n${this.log()}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
  }

  /** The address a user signs in with: `email` itself, or on a running
   * gateway, tagged with this run (`bob@example.com` → `bob-<tag>@example.com`). */
  email(email) {
    if (!this.external) return email;
    const at = email.indexOf('@');
    return `${email.slice(0, at)}-${RUN_TAG}${email.slice(at)}`;
  }

  /** A session JWT minted by `agentshare token` for this data dir (or the
   * running gateway's keys dir, from the environment, for this run's tagged
   * user). */
  token(user, email, { stepUp = false } = {}) {
    const args = this.external
      ? ['token', '--user', `${user}-${RUN_TAG}`, '--email', this.email(email)]
      : ['token', '--data-dir', this.dataDir, '--user', user, '--email', email];
    if (stepUp) args.push('--step-up');
    return execFileSync(this.binary, args, { encoding: 'utf8' }).trim();
  }

  /** The server's last 200 lines of stderr. */
  log() {
    if (this.external) return `(the gateway at ${this.address} runs elsewhere; see its logs, e.g. target/local/logs)`;
    return this.lines.slice(-200).join('\n');
  }

  async stop() {
    if (this.external) return;
    this.process.kill('SIGKILL');
    await this.exited;
    this.stderr.close();
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}
