// gRPC-Web from a client we did not write: @connectrpc/connect with
// @connectrpc/connect-node's gRPC-Web transport over HTTP/1.1, the services
// taken at run time from a descriptor set buf builds from proto/, against a
// real `agentshare serve` (tonic-web on the gateway's one port).
//
// A builder creates her org (unary), builds and deploys an agent, and runs
// it with InvokeStream (server streaming): started, text deltas and tool
// calls, completed. A store Watch that fails after it started ends with the
// error in the gRPC-Web trailers. A call refused for want of a credential
// answers UNAUTHENTICATED and leaves the connection usable.

import http from 'node:http';
import { after, before, describe } from 'node:test';
import assert from 'node:assert/strict';

import { Code } from '@connectrpc/connect';

import { storySteps } from '../support/story_steps.mjs';
import { Server, enumValue, rejects } from './server.mjs';

describe('gRPC-Web through @connectrpc/connect-node', () => {
  let server;
  // What the steps learn and pass on.
  const story = {};
  // The steps build on each other: once one fails, the later ones skip.
  const step = storySteps();

  before(async () => {
    server = await Server.start();
    story.dana = server.caller({ token: server.token('dana', 'dana@example.com', { stepUp: true }) });
  });

  after(async () => {
    await server?.stop();
  });

  step('1. unary: CreateOrg, then GetMe names the org, the owner role and step-up', async () => {
    const { dana } = story;
    const created = await dana.tenancy.createOrg({ name: 'Initech' });
    assert.equal(created.org.name, 'Initech');
    assert.equal(created.defaultWorkspace.isDefault, true);
    const me = await dana.tenancy.getMe({});
    assert.equal(me.orgId, created.org.id);
    assert.equal(me.orgRole, enumValue(server.registry, 'agentshare.sharing.v1.OrgRole', 'ORG_ROLE_OWNER'));
    assert.equal(me.workspaceId, created.defaultWorkspace.id);
    assert.equal(me.stepUpFresh, true);
    assert.equal(me.user.email, 'dana@example.com');

    // Errors come back as gRPC status codes in the gRPC-Web trailers.
    await rejects(dana.tenancy.createOrg({ name: '' }), Code.InvalidArgument, 'name');
  });

  step('2. unary: the builder creates and deploys an agent', async () => {
    const { dana } = story;
    const { agent } = await dana.registry.createAgent({ draft: { name: 'Helper' } });
    assert.equal(agent.draftRevision, 1n, 'int64 is a bigint');
    const deployed = await dana.registry.deployAgent({ agentId: agent.id, expectedDraftRevision: 1n });
    assert.equal(deployed.version.number, 1n);
    assert.equal(
      deployed.agent.state,
      enumValue(server.registry, 'agentshare.registry.v1.AgentState', 'AGENT_STATE_ACTIVE'),
    );
    story.agentId = agent.id;
  });

  step('3. server streaming: InvokeStream sends started, deltas and tool calls, then completed', async () => {
    const { dana, agentId } = story;
    const events = [];
    for await (const message of dana.invoke.invokeStream({
      agentId,
      input: 'hello over gRPC-Web\n/workspace_write {"key":"plan","value":"ship"}\n/workspace_read {"key":"plan"}',
    })) {
      events.push(message.event);
    }
    const kinds = events.map((event) => event.case);
    assert.equal(kinds[0], 'started', kinds.join());
    assert.equal(kinds.at(-1), 'completed', kinds.join());
    assert.deepEqual(new Set(kinds.slice(1, -1)), new Set(['textDelta', 'toolCall']), kinds.join());
    const started = events[0].value;
    const completed = events.at(-1).value;
    assert.equal(started.versionNumber, 1n);
    assert.equal(completed.invocationId, started.invocationId);
    assert.equal(completed.sessionId, started.sessionId);
    assert.equal(
      completed.finishReason,
      enumValue(server.registry, 'agentshare.gateway.v1.FinishReason', 'FINISH_REASON_COMPLETED'),
    );
    const text = events
      .filter((event) => event.case === 'textDelta')
      .map((event) => event.value.text)
      .join('');
    assert.equal(text, completed.outputText);
    assert.ok(text.startsWith('echo: hello over gRPC-Web'), text);
    assert.ok(text.includes('workspace_read: plan = ship'), text);
    const finished = events
      .filter((event) => event.case === 'toolCall' && event.value.phase === 2)
      .map((event) => [event.value.toolName, event.value.succeeded]);
    assert.deepEqual(finished, [
      ['workspace_write', true],
      ['workspace_read', true],
    ]);
  });

  step('4. a stream that fails before its first message is a plain error', async () => {
    const { dana } = story;
    const missing = '01a2428d-5faf-768a-816a-b37b45a798f2';
    const drain = async () => {
      for await (const message of dana.invoke.invokeStream({ agentId: missing, input: 'x' })) {
        throw new assert.AssertionError({ message: `got a message: ${message.event.case}` });
      }
    };
    await rejects(drain(), Code.NotFound, missing);
  });

  step('5. a stream that fails after it started ends with the error in the trailers', async () => {
    const { dana, agentId } = story;
    const cancel = new AbortController();
    const watch = dana.store.watch({ agentId }, { signal: cancel.signal, timeoutMs: 30_000 })[Symbol.asyncIterator]();
    try {
      const first = await watch.next();
      assert.equal(first.value.event.case, 'progress', 'caught up with the partition');
      // Sharing the agent moves Dana's store from her private one to the
      // agent's: the open stream ends with ABORTED.
      await dana.sharing.shareAgent({ agentId });
      const rest = async () => {
        for (;;) {
          const next = await watch.next();
          if (next.done) throw new assert.AssertionError({ message: 'the stream ended without an error' });
        }
      };
      await rejects(rest(), Code.Aborted, 'watch again');
    } finally {
      cancel.abort();
    }
  });

  // HTTP/1.1 connections are kept alive and reused, as browsers do; here
  // one connection, so each call reuses the one before's. A call the gateway
  // refuses before it reads the body (no credential) must not break the
  // next call on that connection. Whether a broken one shows depends on
  // whether the client notices the close before it reuses the connection,
  // so the pair is tried several times.
  step('6. a refused call answers UNAUTHENTICATED, and the next call on its connection succeeds', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const transport = server.newTransport({ agent });
      const nobody = server.caller({ transport });
      const dana = server.caller({ token: server.token('dana', 'dana@example.com'), transport });
      // Each call that fails otherwise than it should, as "code: message".
      const broken = [];
      const tries = 20;
      for (let i = 0; i < tries; i += 1) {
        await nobody.tenancy.getMe({}).then(
          () => broken.push('an answer without a credential'),
          (error) => error.code === Code.Unauthenticated || broken.push(`${error.code}: ${error.rawMessage}`),
        );
        await dana.tenancy.getMe({}).then(
          (me) => assert.equal(me.user.email, 'dana@example.com'),
          (error) => broken.push(`${error.code}: ${error.rawMessage}`),
        );
      }
      assert.deepEqual(broken, [], `${broken.length} of ${2 * tries} calls failed`);
    } finally {
      agent.destroy();
    }
  });
});
