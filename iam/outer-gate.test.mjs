// The IAM outer gate in front of the artifact API (README, "Access control:
// who may do what to which names"), evaluated with @cloud-copilot/iam-simulate
// in its validated, Strict mode (runSimulation, not runUnsafeSimulation).
//
// The API is an HTTP API with the IAM authorizer on every route
// (template.yaml, ArtifactApi: DefaultAuthorizer AWS_IAM) and no StageName,
// so its one stage is `$default`. HTTP APIs take no resource policy: what a
// caller may invoke is decided by its own identity policies alone, on
//   arn:aws:execute-api:REGION:ACCOUNT:API_ID/STAGE/METHOD/PATH
// The account, region and API id here are the README's placeholders.
//
// What these tests pin down:
//  a. the CI role's policy (ci-role-policy.json, linked from the README's CI
//     recipe) reaches the routes of openapi.yaml, and nothing of another API,
//     account or region;
//  b. why the service keeps its own permission targets: an `execute-api`
//     pattern's `*` crosses path segments (a team's PUT pattern also reaches
//     its names' aliases, an any-method pattern also a purge), and IAM matches
//     the ARN's characters, not the name the route decodes;
//  c. an explicit Deny beats the Allow;
//  d. every function role that writes the table, but put-access's, denies
//     writes to the permission targets and their history
//     (access-targets-deny.json, the statement the contract test finds in
//     each of those roles of template.yaml).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { runSimulation } from '@cloud-copilot/iam-simulate';

const REGION = 'us-east-1';
const ACCOUNT = '123456789012';
const API_ID = 'abc123';
const STAGE = '$default';
// What a CI job presents after AssumeRoleWithWebIdentity (README, CI recipe).
const CI_SESSION = `arn:aws:sts::${ACCOUNT}:assumed-role/artifact-ci/github-actions`;

const ciRolePolicy = JSON.parse(
  readFileSync(new URL('./ci-role-policy.json', import.meta.url), 'utf8'),
);

const apiArn = ({ region = REGION, account = ACCOUNT, apiId = API_ID } = {}) =>
  `arn:aws:execute-api:${region}:${account}:${apiId}`;

const policy = (...statements) => ({ Version: '2012-10-17', Statement: statements });
const invoke = (effect, resource) => ({ Effect: effect, Action: 'execute-api:Invoke', Resource: resource });

/**
 * Evaluates `execute-api:Invoke` of METHOD PATH by the CI session holding
 * `policies` (name -> policy document) and returns the evaluator's answer:
 * 'Allowed' | 'ImplicitlyDenied' | 'ExplicitlyDenied'. Fails the test if the
 * simulation did not validate (a malformed policy or request).
 */
async function invokeResult(policies, method, path, where = {}) {
  const account = where.account ?? ACCOUNT;
  const resource = `${apiArn(where)}/${STAGE}/${method}${path}`;
  const sim = await runSimulation(
    {
      request: {
        principal: CI_SESSION,
        action: 'execute-api:Invoke',
        resource: { resource, accountId: account },
        contextVariables: {},
      },
      identityPolicies: Object.entries(policies).map(([name, p]) => ({ name, policy: p })),
      serviceControlPolicies: [],
      resourceControlPolicies: [],
    },
    { simulationMode: 'Strict' },
  );
  assert.equal(sim.resultType, 'single', `simulation of ${resource} did not run: ${JSON.stringify(sim.errors)}`);
  assert.equal(sim.result.resourceType, 'execute-api-general', `${resource} is not an execute-api route ARN`);
  return sim.result.analysis.result;
}

test('validated mode: a malformed identity policy is refused, not evaluated', async () => {
  const sim = await runSimulation(
    {
      request: {
        principal: CI_SESSION,
        action: 'execute-api:Invoke',
        resource: { resource: `${apiArn()}/${STAGE}/GET/artifacts`, accountId: ACCOUNT },
        contextVariables: {},
      },
      identityPolicies: [{ name: 'typo', policy: policy({ ...invoke('Allow', `${apiArn()}/*`), Effect: 'Alow' }) }],
      serviceControlPolicies: [],
      resourceControlPolicies: [],
    },
    { simulationMode: 'Strict' },
  );
  assert.equal(sim.resultType, 'error');
  assert.ok(sim.errors.identityPolicyErrors?.typo?.length > 0, JSON.stringify(sim.errors));
});

// a. The CI role's documented policy.

const ci = { 'ci-role-policy': ciRolePolicy };

// Routes of openapi.yaml, one or more per action of the service's targets.
const routes = [
  ['GET', '/artifacts'], // list
  ['GET', '/search'],
  ['PUT', '/artifacts/my-app'], // publish
  ['POST', '/artifacts/my-app/uploads'], // start an upload
  ['POST', '/artifacts/my-app/uploads/u-1/parts'],
  ['POST', '/artifacts/my-app/versions'], // commit
  ['GET', '/artifacts/my-app/versions/3/content'],
  ['PATCH', '/artifacts/my-app/versions/3'], // a version's status
  ['PUT', '/artifacts/my-app/aliases/prod'], // move an alias
  ['POST', '/artifacts/my-app/aliases/prod/rollback'],
  ['POST', '/artifacts/my-app/purge'], // apply retention
  ['DELETE', '/artifacts/my-app'], // purge
  ['PUT', '/access'], // the permission targets
];

for (const [method, path] of routes) {
  test(`CI role policy: ${method} ${path} on API ${API_ID} is Allowed`, async () => {
    assert.equal(await invokeResult(ci, method, path), 'Allowed');
  });
}

test('CI role policy: another API id in the same account is ImplicitlyDenied', async () => {
  assert.equal(await invokeResult(ci, 'GET', '/artifacts', { apiId: 'xyz789' }), 'ImplicitlyDenied');
  assert.equal(await invokeResult(ci, 'PUT', '/artifacts/my-app', { apiId: 'xyz789' }), 'ImplicitlyDenied');
});

test('CI role policy: the same API id in another account is ImplicitlyDenied', async () => {
  assert.equal(await invokeResult(ci, 'GET', '/artifacts', { account: '210987654321' }), 'ImplicitlyDenied');
  assert.equal(await invokeResult(ci, 'DELETE', '/artifacts/my-app', { account: '210987654321' }), 'ImplicitlyDenied');
});

test('CI role policy: the same API id in another region is ImplicitlyDenied', async () => {
  assert.equal(await invokeResult(ci, 'GET', '/artifacts', { region: 'eu-west-1' }), 'ImplicitlyDenied');
});

// b. What execute-api patterns cannot separate (the README's reason for the
// service's own permission targets).

const teamAPut = { 'team-a-put': policy(invoke('Allow', `${apiArn()}/${STAGE}/PUT/artifacts/team-a*`)) };
const teamAAnyMethod = { 'team-a-any': policy(invoke('Allow', `${apiArn()}/${STAGE}/*/artifacts/team-a*`)) };

test('PUT …/artifacts/team-a*: Allowed for PUT /artifacts/team-a.app (what it was written for)', async () => {
  assert.equal(await invokeResult(teamAPut, 'PUT', '/artifacts/team-a.app'), 'Allowed');
});

test('PUT …/artifacts/team-a*: the wildcard crosses segments, PUT /artifacts/team-a.app/aliases/prod (moving prod) is Allowed too', async () => {
  assert.equal(await invokeResult(teamAPut, 'PUT', '/artifacts/team-a.app/aliases/prod'), 'Allowed');
});

test('PUT …/artifacts/team-a*: the method is its own segment, DELETE /artifacts/team-a.app (purge) is ImplicitlyDenied', async () => {
  assert.equal(await invokeResult(teamAPut, 'DELETE', '/artifacts/team-a.app'), 'ImplicitlyDenied');
});

test('*/artifacts/team-a* (any method): DELETE /artifacts/team-a.app (purge) is Allowed', async () => {
  assert.equal(await invokeResult(teamAAnyMethod, 'DELETE', '/artifacts/team-a.app'), 'Allowed');
});

test('*/artifacts/team-a* (any method): POST …/team-a.app/purge (retention) and PUT …/aliases/prod are Allowed', async () => {
  assert.equal(await invokeResult(teamAAnyMethod, 'POST', '/artifacts/team-a.app/purge'), 'Allowed');
  assert.equal(await invokeResult(teamAAnyMethod, 'PUT', '/artifacts/team-a.app/aliases/prod'), 'Allowed');
});

// IAM compares the ARN's characters: `%2D` is not `-`. (Whether API Gateway
// puts a request's raw or decoded path into the ARN it authorises is its own
// business; the service, for its part, matches the decoded, validated name.)
test('team-a* does not match the percent-encoded /artifacts/team%2Da.app: ImplicitlyDenied (an encoded name slips past the pattern)', async () => {
  assert.equal(await invokeResult(teamAPut, 'PUT', '/artifacts/team-a.app'), 'Allowed');
  assert.equal(await invokeResult(teamAPut, 'PUT', '/artifacts/team%2Da.app'), 'ImplicitlyDenied');
});

test('the same slip the other way: a Deny on */DELETE/artifacts/team-a* does not catch DELETE /artifacts/team%2Da.app (Allowed)', async () => {
  const policies = {
    ...ci,
    'no-team-a-purge': policy(invoke('Deny', `${apiArn()}/*/DELETE/artifacts/team-a*`)),
  };
  assert.equal(await invokeResult(policies, 'DELETE', '/artifacts/team-a.app'), 'ExplicitlyDenied');
  assert.equal(await invokeResult(policies, 'DELETE', '/artifacts/team%2Da.app'), 'Allowed');
});

// c. An explicit Deny overrides the CI role's Allow.

const ciNoDelete = {
  ...ci,
  'no-delete': policy(invoke('Deny', `${apiArn()}/*/DELETE/*`)),
};

test('Deny */DELETE/* on the CI role: DELETE /artifacts/my-app and DELETE …/versions/3 are ExplicitlyDenied', async () => {
  assert.equal(await invokeResult(ciNoDelete, 'DELETE', '/artifacts/my-app'), 'ExplicitlyDenied');
  assert.equal(await invokeResult(ciNoDelete, 'DELETE', '/artifacts/my-app/versions/3'), 'ExplicitlyDenied');
});

test('Deny */DELETE/* on the CI role: other methods stay Allowed', async () => {
  assert.equal(await invokeResult(ciNoDelete, 'PUT', '/artifacts/my-app'), 'Allowed');
  assert.equal(await invokeResult(ciNoDelete, 'POST', '/artifacts/my-app/versions'), 'Allowed');
  assert.equal(await invokeResult(ciNoDelete, 'GET', '/artifacts'), 'Allowed');
});

// d. The permission targets are put-access's alone.

const TABLE = `arn:aws:dynamodb:${REGION}:${ACCOUNT}:table/artifacts`;
const FUNCTION_ROLE = `arn:aws:sts::${ACCOUNT}:assumed-role/stack-StartUploadFunctionRole-X/start-upload`;
const accessDeny = JSON.parse(
  readFileSync(new URL('./access-targets-deny.json', import.meta.url), 'utf8'),
);
// A writing function's table statement (template.yaml) and the Deny beside it.
const functionPolicy = policy(
  {
    Effect: 'Allow',
    Action: ['dynamodb:BatchWriteItem', 'dynamodb:DeleteItem', 'dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem'],
    Resource: TABLE,
  },
  { ...accessDeny, Resource: TABLE },
);

async function tableWrite(action, leadingKeys) {
  const sim = await runSimulation(
    {
      request: {
        principal: FUNCTION_ROLE,
        action,
        resource: { resource: TABLE, accountId: ACCOUNT },
        contextVariables: { 'dynamodb:LeadingKeys': leadingKeys },
      },
      identityPolicies: [{ name: 'data', policy: functionPolicy }],
      serviceControlPolicies: [],
      resourceControlPolicies: [],
    },
    { simulationMode: 'Strict' },
  );
  assert.equal(sim.resultType, 'single', `simulation did not run: ${JSON.stringify(sim.errors)}`);
  return sim.result.analysis.result;
}

for (const action of ['dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem']) {
  test(`a writing function: ${action} of an artifact's item is Allowed, of the permission targets ExplicitlyDenied`, async () => {
    assert.equal(await tableWrite(action, ['my-app']), 'Allowed');
    assert.equal(await tableWrite(action, ['__my-app-alias']), 'Allowed');
    assert.equal(await tableWrite(action, ['__access']), 'ExplicitlyDenied');
    assert.equal(await tableWrite(action, ['__access/history']), 'ExplicitlyDenied');
  });
}

test('a writing function: a batch touching the permission targets among other items is ExplicitlyDenied', async () => {
  assert.equal(await tableWrite('dynamodb:BatchWriteItem', ['my-app', '__my-app-history']), 'Allowed');
  assert.equal(await tableWrite('dynamodb:BatchWriteItem', ['my-app', '__access/history']), 'ExplicitlyDenied');
});
