// A real `agentshare serve` for the suite (started by
// tests/clients/support/serve.mjs), and gRPC-Web callers that reach it
// through @connectrpc/connect-node's gRPC-Web transport over HTTP/1.1.
//
// Nothing is generated: tests/clients/run builds a descriptor set from
// proto/ with buf (AGENTSHARE_DESCRIPTOR_SET), which @bufbuild/protobuf loads
// into a registry at run time; `createClient` takes the services from it.
// The binary comes from AGENTSHARE_BIN.

import { readFileSync } from 'node:fs';
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

import { CALL_TIMEOUT_MS, PUBLIC_SERVICES, ServeProcess } from '../support/serve.mjs';

// The public services the suite calls, the ones it waits for.
const SERVICES = Object.fromEntries(
  ['tenancy', 'sharing', 'registry', 'store', 'invoke'].map((name) => [name, PUBLIC_SERVICES[name]]),
);

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

/** `agentshare serve` (see tests/clients/support/serve.mjs), reached over
 * gRPC-Web. */
export class Server extends ServeProcess {
  constructor(binary) {
    const registry = loadRegistry();
    super(binary, { name: 'grpcweb', services: SERVICES });
    this.registry = registry;
  }

  // Health over gRPC-Web too, through the same transport.
  connect() {
    this.transport = this.newTransport();
    this.health = createClient(service(this.registry, 'grpc.health.v1.Health'), this.transport);
    this.servingStatus = enumValue(this.registry, 'grpc.health.v1.HealthCheckResponse.ServingStatus', 'SERVING');
  }

  async serving(name) {
    const answer = await this.health.check({ service: name }, { timeoutMs: 1000 }).catch(() => null);
    return answer?.status === this.servingStatus;
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
    for (const [name, typeName] of Object.entries(this.services)) {
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
