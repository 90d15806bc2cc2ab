// The README's research agent story, told through @grpc/grpc-js with
// @grpc/proto-loader reading proto/ at run time, against a real
// `agentshare serve`.
//
// Alice builds a research agent whose web search uses her own search API key
// (SHARED) and whose CRM is each user's own (USER_CONFIGURED), and shares it
// with the workspace. Bob, her teammate, connects his CRM and runs it on his
// own bill. A DELEGATE grant lets an anonymous visitor run it until Alice
// revokes it. A run writes and reads the workspace store through the echo
// runtime's tool calls. Bob subscribes to the agent's daily automation.

import { after, before, describe } from 'node:test';
import assert from 'node:assert/strict';

import { storySteps } from '../support/story_steps.mjs';
import { Server, rejects } from './server.mjs';

const ALICE_SEARCH_KEY = 'srch-alice-0001';
const BOB_CRM_KEY = 'crm-bob-0001';
const ALICE_CRM_KEY = 'crm-alice-0001';

function tools(searchConnectionId = '') {
  return [
    {
      integration_key: 'web_search',
      provider: 'search',
      scope: 'INTEGRATION_SCOPE_SHARED',
      connection_id: searchConnectionId,
      display_name: 'Web search',
    },
    { integration_key: 'crm', provider: 'crm', scope: 'INTEGRATION_SCOPE_USER_CONFIGURED', display_name: 'Your CRM' },
  ];
}

const dailyBrief = {
  key: 'daily_brief',
  display_name: 'Daily brief at 8:00',
  schedule: { daily: { time_of_day: { hours: 8, minutes: 0 } } },
  time_zone: 'Europe/Berlin',
  task: "Summarise yesterday's accounts.",
  suggested_channels: ['NOTIFICATION_CHANNEL_WEB'],
};

async function myAgentRow(caller, agentId) {
  const { agents } = await caller.access.ListMyAgents({});
  return agents.find((row) => row.agent_id === agentId);
}

function run(caller, agentId, input, fields = {}) {
  return caller.invoke.Invoke({ agent_id: agentId, input, ...fields });
}

describe('the research agent story', () => {
  let server;
  // What the steps learn and pass on: callers, ids, tokens.
  const story = {};
  // The steps build on each other: once one fails, the later ones skip.
  const step = storySteps();

  before(async () => {
    server = await Server.start();
    story.alice = server.caller({ token: server.token('alice', 'alice@example.com', { stepUp: true }) });
    story.bob = server.caller({ token: server.token('bob', 'bob@example.com') });
  });

  after(async () => {
    await server?.stop();
  });

  step('1. the builder creates, deploys and shares the research agent', async () => {
    const { alice } = story;
    const created = await alice.tenancy.CreateOrg({ name: 'Acme' });
    assert.equal(created.org.name, 'Acme');
    assert.ok(created.default_workspace.is_default);
    const me = await alice.tenancy.GetMe({});
    assert.equal(me.org_id, created.org.id);
    assert.equal(me.org_role, 'ORG_ROLE_OWNER');
    assert.ok(me.step_up_fresh);
    story.alice_id = me.user.id;

    // Keys of the `search` provider start with `srch-`: a pasted key is
    // stored as it is, and testing it tells a wrong one apart.
    const { connection: wrong } = await alice.connections.CreateApiKeyConnection({
      provider: 'search',
      api_key: 'alice-0001',
      label: 'Pasted the wrong key',
    });
    let tested = await alice.connections.TestConnection({ connection_id: wrong.id });
    assert.equal(tested.ok, false);
    assert.ok(tested.message.includes('srch-'), tested.message);
    assert.equal(tested.connection.status, 'CONNECTION_STATUS_FAILED');
    await alice.connections.DeleteConnection({ connection_id: wrong.id });
    const { connection: search } = await alice.connections.CreateApiKeyConnection({
      provider: 'search',
      api_key: ALICE_SEARCH_KEY,
      label: 'Search API',
    });
    assert.equal(search.provider, 'search');
    assert.equal(search.status, 'CONNECTION_STATUS_LIVE');
    assert.ok(!JSON.stringify(search).includes(ALICE_SEARCH_KEY), 'no call returns a secret');
    tested = await alice.connections.TestConnection({ connection_id: search.id });
    assert.ok(tested.ok, tested.message);
    await rejects(
      alice.connections.CreateApiKeyConnection({ provider: 'serch', api_key: ALICE_SEARCH_KEY, label: 'Typo' }),
      'INVALID_ARGUMENT',
      'provider: is not a configured provider',
    );

    const { agent } = await alice.registry.CreateAgent({
      draft: {
        name: 'Research',
        description: 'Researches accounts on the web and in your CRM.',
        instructions: 'Secret playbook: search first, then the CRM.',
        tools: tools(),
        automations: [dailyBrief],
      },
    });
    assert.equal(agent.state, 'AGENT_STATE_DRAFT');
    assert.equal(agent.draft_revision, 1);
    story.agent_id = agent.id;

    // A draft cannot be shared, and a SHARED tool needs the builder's
    // connection before it deploys.
    await rejects(alice.sharing.ShareAgent({ agent_id: agent.id }), 'FAILED_PRECONDITION', 'deploy');
    await rejects(
      alice.registry.DeployAgent({ agent_id: agent.id, expected_draft_revision: 1 }),
      'FAILED_PRECONDITION',
      'web_search',
    );
    const { agent: edited } = await alice.registry.UpdateDraft({
      agent_id: agent.id,
      draft: { tools: tools(search.id) },
      update_mask: { paths: ['tools'] },
      expected_draft_revision: 1,
    });
    assert.equal(edited.draft_revision, 2);
    assert.equal(edited.draft.tools[0].connection_id, search.id);

    const deployed = await alice.registry.DeployAgent({
      agent_id: agent.id,
      expected_draft_revision: 2,
      notes: 'first version',
    });
    assert.ok(deployed.created);
    assert.equal(deployed.version.number, 1);
    assert.equal(deployed.agent.state, 'AGENT_STATE_ACTIVE');

    const { sharing } = await alice.sharing.ShareAgent({ agent_id: agent.id });
    assert.ok(sharing.shared);
    assert.equal(sharing.home_workspace_id, created.default_workspace.id);
  });

  step('2. a teammate connects his CRM and runs it on his own bill', async () => {
    const { alice, bob, agent_id: agentId } = story;
    // Bob signs in once, so agentshare knows him; Alice adds him.
    const bobMe = await bob.tenancy.GetMe({});
    assert.equal(bobMe.org_id, '');
    story.bob_id = bobMe.user.id;
    const { member } = await alice.tenancy.AddOrgMember({
      email: server.email('bob@example.com'),
      role: 'ORG_ROLE_MEMBER',
    });
    assert.equal(member.role, 'ORG_ROLE_MEMBER');

    // My Agents: shared with him, orange dot.
    const row = await myAgentRow(bob, agentId);
    assert.ok(row, "the shared agent is in Bob's My Agents");
    assert.equal(row.relation, 'AGENT_RELATION_SHARED_WITH_YOU');
    assert.equal(row.setup_status, 'SETUP_STATUS_SETUP_REQUIRED');
    assert.ok(row.can_run);
    assert.equal(row.latest_version, 1);

    // He sees the design but never the instructions.
    const { agent: seen } = await bob.registry.GetAgent({ agent_id: agentId });
    assert.equal(seen.caller_can_edit, false);
    assert.equal(seen.draft.instructions, '');
    assert.deepEqual(
      seen.draft.tools.map((t) => [t.integration_key, t.connection_id]),
      [
        ['web_search', ''],
        ['crm', ''],
      ],
    );

    await rejects(run(bob, agentId, 'accounts in Lyon'), 'FAILED_PRECONDITION', 'crm');
    const { setup } = await bob.connections.GetAgentSetup({ agent_id: agentId });
    assert.equal(setup.status, 'SETUP_STATUS_SETUP_REQUIRED');
    assert.deepEqual(
      setup.missing.map((m) => [m.integration_key, m.reason]),
      [['crm', 'SETUP_GAP_REASON_NOT_BOUND']],
    );
    assert.deepEqual(
      setup.integrations.map((i) => [i.integration_key, i.binding_required]),
      [
        ['web_search', false],
        ['crm', true],
      ],
    );

    const { connection: crm } = await bob.connections.CreateApiKeyConnection({
      provider: 'crm',
      api_key: BOB_CRM_KEY,
      label: 'My CRM',
    });
    const { setup: bound } = await bob.connections.BindIntegration({
      agent_id: agentId,
      integration_key: 'crm',
      connection_id: crm.id,
    });
    assert.equal(bound.status, 'SETUP_STATUS_READY');
    assert.deepEqual(bound.missing, []);
    assert.equal((await myAgentRow(bob, agentId)).setup_status, 'SETUP_STATUS_READY');

    const answer = await run(bob, agentId, 'accounts in Lyon');
    const text = answer.output_text;
    assert.ok(text.startsWith('echo: accounts in Lyon'), text);
    assert.ok(text.includes("web_search (search) with the agent owner's connection"), text);
    assert.ok(text.includes('crm (crm) with your connection'), text);
    for (const secret of [BOB_CRM_KEY, ALICE_SEARCH_KEY, 'Secret playbook']) assert.ok(!text.includes(secret), text);
    assert.equal(answer.billed_to, 'BILLED_PARTY_CALLER');
    assert.equal(answer.version_number, 1);
    assert.ok(answer.session_id);
    assert.equal(answer.finish_reason, 'FINISH_REASON_COMPLETED');

    const { invocations: billed } = await bob.usage.ListInvocations({ scope: 'USAGE_SCOPE_BILLED_TO_CALLER' });
    assert.deepEqual(
      billed.map((r) => r.id),
      [answer.invocation_id],
    );
    assert.equal(billed[0].billed_to_user_id, story.bob_id);
    assert.equal(billed[0].status, 'INVOCATION_STATUS_SUCCEEDED');
    const { invocations: aliceBilled } = await alice.usage.ListInvocations({ scope: 'USAGE_SCOPE_BILLED_TO_CALLER' });
    assert.deepEqual(aliceBilled, [], "Alice pays nothing for Bob's run");

    const transcript = await bob.sessions.GetSession({ session_id: answer.session_id });
    assert.deepEqual(
      transcript.messages.map((m) => m.content),
      ['accounts in Lyon', text],
    );
  });

  step('3. an anonymous visitor runs it on a DELEGATE grant until it is revoked', async () => {
    const { alice, agent_id: agentId } = story;
    const granted = await alice.sharing.CreateGrant({
      agent_id: agentId,
      kind: 'GRANT_KIND_DELEGATE',
      label: 'website widget',
    });
    assert.ok(granted.token);
    assert.ok(granted.token.startsWith(granted.grant.token_prefix));
    assert.equal(granted.grant.state, 'GRANT_STATE_ACTIVE');
    const visitor = server.caller({ grantToken: granted.token });
    const nobody = server.caller();

    await rejects(run(nobody, agentId, 'hello'), 'UNAUTHENTICATED');
    // A DELEGATE run uses the owner's connections: Alice has not connected
    // a CRM of her own yet.
    await rejects(run(visitor, agentId, 'where are my orders?'), 'FAILED_PRECONDITION', 'crm');
    const { connection: crm } = await alice.connections.CreateApiKeyConnection({
      provider: 'crm',
      api_key: ALICE_CRM_KEY,
      label: 'Support CRM',
    });
    await alice.connections.BindIntegration({ agent_id: agentId, integration_key: 'crm', connection_id: crm.id });

    const answer = await run(visitor, agentId, 'where are my orders?');
    assert.ok(answer.output_text.startsWith('echo: where are my orders?'), answer.output_text);
    assert.ok(answer.output_text.includes("crm (crm) with the agent owner's connection"), answer.output_text);
    assert.equal(answer.billed_to, 'BILLED_PARTY_AGENT_OWNER');
    assert.ok(answer.session_secret, 'an anonymous session has its own secret');
    // The grant allows running its agent and nothing else.
    await rejects(visitor.tenancy.GetMe({}), 'PERMISSION_DENIED');
    const { invocations } = await alice.usage.ListInvocations({
      scope: 'USAGE_SCOPE_BILLED_TO_CALLER',
      agent_id: agentId,
    });
    assert.ok(
      invocations.some((r) => r.id === answer.invocation_id),
      'the owner pays',
    );

    await alice.sharing.RevokeGrant({ grant_id: granted.grant.id });
    await rejects(run(visitor, agentId, 'and now?'), 'UNAUTHENTICATED', 'token revoked');
    const { grants } = await alice.sharing.ListGrants({ agent_id: agentId, include_inactive: true });
    assert.deepEqual(
      grants.map((g) => [g.id, g.state]),
      [[granted.grant.id, 'GRANT_STATE_REVOKED']],
    );
  });

  step('4. a run writes and reads the workspace through its tools', async () => {
    const { bob, agent_id: agentId } = story;
    const answer = await run(
      bob,
      agentId,
      'remember the plan\n/workspace_write {"key":"plan","value":"ship"}\n/workspace_read {"key":"plan"}',
    );
    const text = answer.output_text;
    assert.ok(text.startsWith('echo: remember the plan'), text);
    assert.ok(text.includes('workspace_write: wrote plan at revision'), text);
    assert.ok(text.includes('workspace_read: plan = ship'), text);
    assert.deepEqual(
      answer.tool_calls.map((c) => [c.tool_name, c.succeeded]),
      [
        ['workspace_write', true],
        ['workspace_read', true],
      ],
    );
    assert.equal(answer.tool_calls[1].result_summary, 'plan = ship');
    assert.equal(answer.tool_calls[0].phase, 'TOOL_CALL_PHASE_FINISHED');

    // Bob reads the same item as himself: the agent's team store.
    const { item } = await bob.store.WorkspaceRead({ agent_id: agentId, key: 'plan' });
    assert.deepEqual([item.key, item.value], ['plan', 'ship']);
    assert.equal(item.created_by, agentId);
    await rejects(bob.store.WorkspaceRead({ agent_id: agentId, key: 'no-such-key' }), 'NOT_FOUND');
  });

  step('5. a teammate subscribes to the daily automation', async () => {
    const { bob, agent_id: agentId } = story;
    const { automations: offered } = await bob.automations.ListAutomations({ agent_id: agentId });
    assert.deepEqual(
      offered.map((a) => a.key),
      ['daily_brief'],
    );
    const [brief] = offered;
    assert.equal(brief.schedule.description, 'Daily at 08:00 Europe/Berlin');
    assert.equal(brief.schedule.cron, '0 8 * * *');
    assert.equal(brief.next_fire_times.length, 3);
    assert.ok(brief.can_enable);
    assert.equal(brief.my_subscription, null, 'automations are off by default');

    const { subscription } = await bob.automations.Subscribe({
      agent_id: agentId,
      automation_key: 'daily_brief',
      enabled: true,
      channels: ['NOTIFICATION_CHANNEL_WEB'],
    });
    assert.ok(subscription.enabled);
    assert.equal(subscription.status, 'SUBSCRIPTION_STATUS_ACTIVE');
    await rejects(bob.automations.Subscribe({ agent_id: agentId, automation_key: 'daily_brief' }), 'ALREADY_EXISTS');

    const { subscriptions: mine } = await bob.automations.ListMySubscriptions({});
    assert.deepEqual(
      mine.map((s) => [s.agent_id, s.automation_key]),
      [[agentId, 'daily_brief']],
    );
    const [row] = mine;
    assert.equal(row.id, subscription.id);
    assert.equal(row.user_id, story.bob_id);
    assert.ok(row.enabled);
    assert.equal(row.status, 'SUBSCRIPTION_STATUS_ACTIVE');
    assert.deepEqual(row.channels, ['NOTIFICATION_CHANNEL_WEB']);
    assert.ok(row.next_run_time, 'the next run is scheduled');
    assert.equal(row.agent_name, 'Research');
    assert.equal(row.schedule_description, 'Daily at 08:00 Europe/Berlin');
    // Alice subscribed to nothing: each user's switch is their own.
    const { subscriptions: alices } = await story.alice.automations.ListMySubscriptions({});
    assert.deepEqual(alices, []);
  });
});
