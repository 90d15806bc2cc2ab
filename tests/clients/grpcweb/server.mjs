// A real `agentshare serve` for the suite, and gRPC-Web callers that reach
// it through @connectrpc/connect-node's gRPC-Web transport over HTTP/1.1.
//
// Nothing is generated: tests/clients/run builds a descriptor set from
// proto/ with buf (AGENTSHARE_DESCRIPTOR_SET), which @bufbuild/protobuf loads
// into a registry at run time; `createClient` takes the services from it.
// The binary comes from AGENTSHARE_BIN.

import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import assert from 'node:assert/strict';

import { create, createFileRegistry, fromBinary } from '@bufbuild/protobuf';
import {
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
} from '@bufbuild/protobuf/wkt';
import { ConnectError, createClient } from '@connectrpc/connect';
import { createGrpcWebTransport } from '@connectrpc/connect-node';

const SERVING_LINE = /agentshare is serving on (\S+:\d+) \(data dir /;
const START_WITHIN_MS = 30_000;
const CALL_TIMEOUT_MS = 15_000;

// The public services the suite calls; the gateway reports each SERVING
// once its backend does.
const SERVICES = {
  tenancy: 'agentshare.sharing.v1.TenancyService',
  sharing: 'agentshare.sharing.v1.SharingService',
  registry: 'agentshare.registry.v1.AgentRegistryService',
  store: 'agentshare.store.v1.WorkspaceStoreService',
  invoke: 'agentshare.gateway.v1.InvokeService',
};

// The standard health-checking protocol (grpc.health.v1) is not part of
// proto/: its three declarations, as a FileDescriptorProto.
const HEALTH_FILE = create(FileDescriptorProtoSchema, {
  name: 'grpc/health/v1/health.proto',
  package: 'grpc.health.v1',
  syntax: 'proto3',
  messageType: [
    {
      name: 'HealthCheckRequest',
      field: [
        {
          name: 'service',
          jsonName: 'service',
          number: 1,
          label: FieldDescriptorProto_Label.OPTIONAL,
          type: FieldDescriptorProto_Type.STRING,
        },
      ],
    },
    {
      name: 'HealthCheckResponse',
      field: [
        {
          name: 'status',
          jsonName: 'status',
          number: 1,
          label: FieldDescriptorProto_Label.OPTIONAL,
          type: FieldDescriptorProto_Type.ENUM,
          typeName: '.grpc.health.v1.HealthCheckResponse.ServingStatus',
        },
      ],
      enumType: [
        {
          name: 'ServingStatus',
          value: [
            { name: 'UNKNOWN', number: 0 },
            { name: 'SERVING', number: 1 },
            { name: 'NOT_SERVING', number: 2 },
            { name: 'SERVICE_UNKNOWN', number: 3 },
          ],
        },
      ],
    },
  ],
  service: [
    {
      name: 'Health',
      method: [
        {
          name: 'Check',
          inputType: '.grpc.health.v1.HealthCheckRequest',
          outputType: '.grpc.health.v1.HealthCheckResponse',
        },
      ],
    },
  ],
});

/** The contract: every file buf built from proto/ (with its imports), and
 * the health protocol. */
export function loadRegistry() {
  const file = process.env.AGENTSHARE_DESCRIPTOR_SET;
  assert.ok(file, 'run the suite with `tests/clients/run grpcweb`, which builds the descriptor set');
  const set = fromBinary(FileDescriptorSetSchema, readFileSync(file));
  set.file.push(HEALTH_FILE);
  return createFileRegistry(set);
}

function service(registry, typeName) {
  const found = registry.getService(typeName);
  assert.ok(found, `${typeName} is not in the descriptor set`);
  return found;
}

/** The number of an enum value, by its name in the contract. */
export function enumValue(registry, enumTypeName, valueName) {
  const found = registry.getEnum(enumTypeName)?.values.find((value) => value.name === valueName);
  assert.ok(found, `${enumTypeName}.${valueName} is not in the descriptor set`);
  return found.number;
}

/** `agentshare serve` on a fresh data dir and a port the OS picks. */
export class Server {
  static async start() {
    const binary = process.env.AGENTSHARE_BIN;
    assert.ok(binary, 'set AGENTSHARE_BIN to the agentshare binary (tests/clients/run does)');
    const server = new Server(binary);
    try {
      server.address = await server.#address();
      server.transport = server.newTransport();
      await server.#waitServing();
    } catch (error) {
      await server.stop();
      throw error;
    }
    return server;
  }

  constructor(binary) {
    this.binary = binary;
    this.registry = loadRegistry();
    this.lines = [];
    this.dataDir = mkdtempSync(path.join(tmpdir(), 'agentshare-grpcweb-'));
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

  /** A gRPC-Web transport over HTTP/1.1; `nodeOptions` go to Node's
   * http.request (such as an `agent` of its own). */
  newTransport(nodeOptions = {}) {
    return createGrpcWebTransport({
      baseUrl: `http://${this.address}`,
      httpVersion: '1.1',
      useBinaryFormat: true,
      nodeOptions,
    });
  }

  // Health over gRPC-Web too, through the same transport.
  async #waitServing() {
    const health = createClient(service(this.registry, 'grpc.health.v1.Health'), this.transport);
    const serving = enumValue(this.registry, 'grpc.health.v1.HealthCheckResponse.ServingStatus', 'SERVING');
    const deadline = Date.now() + START_WITHIN_MS;
    for (const name of ['', ...Object.values(SERVICES)]) {
      for (;;) {
        const answer = await health.check({ service: name }, { timeoutMs: 1000 }).catch(() => null);
        if (answer?.status === serving) break;
        if (Date.now() > deadline) throw new Error(`${name || 'the server'} not SERVING:\n${this.log()}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
  }

  /** A session JWT minted by `agentshare token` for this data dir. */
  token(user, email, { stepUp = false } = {}) {
    const args = ['token', '--data-dir', this.dataDir, '--user', user, '--email', email];
    if (stepUp) args.push('--step-up');
    return execFileSync(this.binary, args, { encoding: 'utf8' }).trim();
  }

  /**
   * One caller's view of the gateway: a client per service whose calls all
   * carry `authorization: Bearer <token>` (none without a token).
   * `caller.tenancy.getMe({})` returns a promise of the answer;
   * `caller.invoke.invokeStream({...})` an async iterable of messages.
   * Callers share one transport unless given their own.
   */
  caller({ token, transport = this.transport } = {}) {
    const headers = token === undefined ? {} : { authorization: `Bearer ${token}` };
    const caller = {};
    for (const [name, typeName] of Object.entries(SERVICES)) {
      const client = createClient(service(this.registry, typeName), transport);
      caller[name] = new Proxy(
        {},
        {
          get: (_, method) => (request, options = {}) =>
            client[method](request, { timeoutMs: CALL_TIMEOUT_MS, ...options, headers: { ...headers, ...options.headers } }),
        },
      );
    }
    return caller;
  }

  log() {
    return this.lines.slice(-200).join('\n');
  }

  async stop() {
    this.process.kill('SIGKILL');
    await this.exited;
    this.stderr.close();
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** Awaits a call that must fail with `code` (a Code number of
 * @connectrpc/connect) and a message holding every fragment; returns the
 * ConnectError. */
export async function rejects(call, code, ...fragments) {
  const error = await Promise.resolve(call).then(
    (answer) => {
      throw new assert.AssertionError({ message: `expected code ${code}, got an answer: ${answer}` });
    },
    (error) => error,
  );
  assert.ok(error instanceof ConnectError, `not a ConnectError: ${error}`);
  assert.equal(error.code, code, `code ${error.code}: ${error.rawMessage}`);
  for (const fragment of fragments) assert.ok(error.rawMessage.includes(fragment), error.rawMessage);
  return error;
}
