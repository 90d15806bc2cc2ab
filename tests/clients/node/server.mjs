// A real `agentshare serve` for the suite, and callers that reach it.
//
// @grpc/proto-loader reads every .proto under proto/ at run time (the list
// comes from tests/clients/run in AGENTSHARE_PROTO_FILES); nothing is
// generated. The binary comes from AGENTSHARE_BIN.

import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import assert from 'node:assert/strict';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const SERVING_LINE = /agentshare is serving on (\S+:\d+) \(data dir /;
const START_WITHIN_MS = 30_000;
const CALL_TIMEOUT_MS = 15_000;

// Field names as the protos spell them, enums as their names, int64 as
// numbers, unset fields with their defaults (null for messages).
const LOAD_OPTIONS = { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true };

// Every public service the story calls; the gateway reports each SERVING
// once its backend does.
const SERVICES = {
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

// The standard health-checking protocol (grpc.health.v1), which is not part
// of proto/: its three declarations, as proto-loader's JSON form.
const HEALTH = {
  nested: { grpc: { nested: { health: { nested: { v1: { nested: {
    HealthCheckRequest: { fields: { service: { type: 'string', id: 1 } } },
    HealthCheckResponse: {
      fields: { status: { type: 'ServingStatus', id: 1 } },
      nested: { ServingStatus: { values: { UNKNOWN: 0, SERVING: 1, NOT_SERVING: 2, SERVICE_UNKNOWN: 3 } } },
    },
    Health: { methods: { Check: { requestType: 'HealthCheckRequest', responseType: 'HealthCheckResponse' } } },
  } } } } } } },
};

function loadContract() {
  const protoDir = process.env.AGENTSHARE_PROTO_DIR;
  const files = (process.env.AGENTSHARE_PROTO_FILES ?? '').split(/\s+/).filter(Boolean);
  assert.ok(protoDir && files.length > 0, 'run the suite with `tests/clients/run node`, which names proto/ and its files');
  const definition = protoLoader.loadSync(files, { ...LOAD_OPTIONS, includeDirs: [protoDir] });
  const health = protoLoader.fromJSON(HEALTH, LOAD_OPTIONS);
  return grpc.loadPackageDefinition({ ...definition, ...health });
}

function lookup(root, fullName) {
  const found = fullName.split('.').reduce((at, part) => at?.[part], root);
  assert.ok(found, `${fullName} is not in the loaded protos`);
  return found;
}

function unary(client, method, request, metadata) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata, { deadline: Date.now() + CALL_TIMEOUT_MS }, (error, response) =>
      error ? reject(error) : resolve(response),
    );
  });
}

/** `agentshare serve` on a fresh data dir and a port the OS picks. */
export class Server {
  static async start() {
    const binary = process.env.AGENTSHARE_BIN;
    assert.ok(binary, 'set AGENTSHARE_BIN to the agentshare binary (tests/clients/run does)');
    const server = new Server(binary);
    try {
      server.address = await server.#address();
      await server.#waitServing();
    } catch (error) {
      await server.stop();
      throw error;
    }
    return server;
  }

  constructor(binary) {
    this.binary = binary;
    this.contract = loadContract();
    this.clients = [];
    this.lines = [];
    this.dataDir = mkdtempSync(path.join(tmpdir(), 'agentshare-node-'));
    this.process = spawn(binary, ['serve', '--data-dir', this.dataDir, '--listen', '127.0.0.1:0'], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, AGENTSHARE_SHUTDOWN_DELAY_MILLIS: '0' },
    });
    this.exited = new Promise((resolve) => this.process.once('exit', (code, signal) => resolve(code ?? signal)));
    this.stderr = readline.createInterface({ input: this.process.stderr });
    this.stderr.on('line', (line) => this.lines.push(line));
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
    const health = this.#client('grpc.health.v1.Health');
    const deadline = Date.now() + START_WITHIN_MS;
    for (const service of ['', ...Object.values(SERVICES)]) {
      for (;;) {
        const answer = await unary(health, 'Check', { service }, new grpc.Metadata()).catch(() => null);
        if (answer?.status === 'SERVING') break;
        if (Date.now() > deadline) throw new Error(`${service || 'the server'} not SERVING:\n${this.log()}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
  }

  #client(fullName) {
    const Client = lookup(this.contract, fullName);
    const client = new Client(this.address, grpc.credentials.createInsecure());
    this.clients.push(client);
    return client;
  }

  /** A session JWT minted by `agentshare token` for this data dir. */
  token(user, email, { stepUp = false } = {}) {
    const args = ['token', '--data-dir', this.dataDir, '--user', user, '--email', email];
    if (stepUp) args.push('--step-up');
    return execFileSync(this.binary, args, { encoding: 'utf8' }).trim();
  }

  /**
   * One caller's view of the gateway: a session token, a share token, or
   * both, sent as `authorization: Bearer …` and `x-agentshare-grant-token`.
   * `caller.tenancy.GetMe({})` returns a promise of the answer.
   */
  caller({ token, grantToken } = {}) {
    const metadata = new grpc.Metadata();
    if (token !== undefined) metadata.set('authorization', `Bearer ${token}`);
    if (grantToken !== undefined) metadata.set('x-agentshare-grant-token', grantToken);
    const caller = {};
    for (const [name, fullName] of Object.entries(SERVICES)) {
      const client = this.#client(fullName);
      caller[name] = new Proxy(
        {},
        { get: (_, method) => (request) => unary(client, method, request, metadata) },
      );
    }
    return caller;
  }

  log() {
    return this.lines.slice(-200).join('\n');
  }

  async stop() {
    for (const client of this.clients) client.close();
    this.process.kill('SIGKILL');
    await this.exited;
    this.stderr.close();
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** Awaits a call that must fail with `code` (a grpc.status name) and a
 * message holding every fragment; returns the error. */
export async function rejects(call, code, ...fragments) {
  const error = await call.then(
    (answer) => {
      throw new assert.AssertionError({ message: `expected ${code}, got an answer: ${JSON.stringify(answer)}` });
    },
    (error) => error,
  );
  assert.equal(grpc.status[error.code], code, `${grpc.status[error.code]}: ${error.details}`);
  for (const fragment of fragments) assert.ok(error.details.includes(fragment), error.details);
  return error;
}
