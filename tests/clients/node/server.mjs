// A real `agentshare serve` for the suite (started by
// tests/clients/support/serve.mjs), and callers that reach it.
//
// @grpc/proto-loader reads every .proto under proto/ at run time (the list
// comes from tests/clients/run in AGENTSHARE_PROTO_FILES); nothing is
// generated. The binary comes from AGENTSHARE_BIN.

import assert from 'node:assert/strict';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

import { CALL_TIMEOUT_MS, PUBLIC_SERVICES, ServeProcess } from '../support/serve.mjs';

// Field names as the protos spell them, enums as their names, int64 as
// numbers, unset fields with their defaults (null for messages).
const LOAD_OPTIONS = { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true };

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

/** `agentshare serve` (see tests/clients/support/serve.mjs), reached over
 * gRPC with every public service the story calls. */
export class Server extends ServeProcess {
  constructor(binary) {
    const contract = loadContract();
    super(binary, { name: 'node', services: PUBLIC_SERVICES });
    this.contract = contract;
    this.clients = [];
  }

  connect() {
    this.health = this.#client('grpc.health.v1.Health');
  }

  async serving(service) {
    const answer = await unary(this.health, 'Check', { service }, new grpc.Metadata()).catch(() => null);
    return answer?.status === 'SERVING';
  }

  #client(fullName) {
    const Client = lookup(this.contract, fullName);
    const client = new Client(this.address, grpc.credentials.createInsecure());
    this.clients.push(client);
    return client;
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
    for (const [name, fullName] of Object.entries(this.services)) {
      const client = this.#client(fullName);
      caller[name] = new Proxy(
        {},
        { get: (_, method) => (request) => unary(client, method, request, metadata) },
      );
    }
    return caller;
  }

  async stop() {
    for (const client of this.clients) client.close();
    await super.stop();
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
