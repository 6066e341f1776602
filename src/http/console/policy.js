// The policy tester as a form: POST /admin/policy/check (service_role only), and its answer
// shown as the verdict, the reason, and every check with each policy's result.

import { $, el, fail } from './ui.js';

const OPERATIONS = [
  'storage.upload', 'storage.overwrite', 'storage.download', 'storage.info', 'storage.list',
  'storage.sign', 'storage.delete', 'storage.move', 'storage.copy', 'storage.bucket.create',
  'storage.bucket.get', 'storage.bucket.list', 'storage.bucket.update', 'storage.bucket.delete',
];

/** The form as the route's JSON body; throws on claims that are not a JSON object. */
function questionOf(form) {
  const value = (name) => form.elements[name].value.trim();
  const question = { role: value('role'), operation: value('operation'), bucket: value('bucket') };
  for (const name of ['sub', 'path', 'mime', 'destination_bucket', 'destination_path']) {
    if (value(name)) question[name] = value(name);
  }
  if (value('size')) question.size = Number(value('size'));
  if (value('claims')) {
    let claims;
    try {
      claims = JSON.parse(value('claims'));
    } catch (error) {
      throw new Error(`the claims are not JSON: ${error.message}`);
    }
    if (typeof claims !== 'object' || claims === null || Array.isArray(claims)) {
      throw new Error('the claims must be a JSON object');
    }
    question.claims = claims;
  }
  return question;
}

function renderReport(report) {
  const verdict = report.allowed ? 'ALLOWED' : `REFUSED (${report.outcome})`;
  const blocks = [
    el('p', { class: `verdict ${report.allowed ? 'allowed' : 'refused'}`, id: 'policy-verdict' }, verdict),
    el('p', { id: 'policy-reason' }, report.reason),
  ];
  if (report.bypasses_rls) blocks.push(el('p', { class: 'note' }, `${report.role} bypasses row level security: no policy is consulted.`));
  if (report.bucket_rule) blocks.push(el('p', {}, `Bucket rule: ${report.bucket_rule}`));
  for (const check of report.checks ?? []) {
    blocks.push(
      el(
        'div',
        { class: 'check-block' },
        el(
          'p',
          {},
          el('strong', {}, `${check.table} ${check.command} ${check.clause}`),
          ` on ${check.row}: `,
          el('span', { class: check.passed ? 'pass' : 'fail' }, check.passed ? 'passed' : 'FAILED'),
        ),
        el(
          'ul',
          {},
          ...check.policies.map((policy) =>
            el(
              'li',
              {},
              el('span', { class: policy.passed ? 'pass' : 'fail' }, policy.passed ? '[pass] ' : '[FAIL] '),
              `${policy.name} (${policy.permissive ? 'permissive' : 'restrictive'}, for ${policy.command}, to ${policy.roles.join(', ')}) → ${policy.result} `,
              policy.expression ? el('code', {}, policy.expression) : null,
              policy.error ? el('span', { class: 'fail' }, ` ${policy.error}`) : null,
            ),
          ),
        ),
      ),
    );
  }
  for (const note of report.notes ?? []) blocks.push(el('p', { class: 'note' }, note));
  $('policy-result').replaceChildren(...blocks);
}

export function initPolicy(ctx) {
  const select = $('policy-operation');
  select.replaceChildren(...OPERATIONS.map((op) => el('option', {}, op)));
  ctx.onSignIn.push((claims) => {
    $('policy-not-service').hidden = claims.role === 'service_role';
    $('policy-result').replaceChildren();
  });
  $('policy-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const result = $('policy-result');
    let question;
    try {
      question = questionOf(event.currentTarget);
    } catch (error) {
      fail(error, 'Policy check');
      return;
    }
    result.replaceChildren(el('p', { class: 'note' }, 'Checking…'));
    try {
      renderReport(await ctx.api.checkPolicy(question));
    } catch (error) {
      const hint = error.status === 403 ? ' The policy tester answers service_role only: sign in with the service_role key.' : '';
      result.replaceChildren(
        el('p', { class: 'verdict refused', id: 'policy-error' }, `The server refused the check: ${error.describe?.() ?? error.message}.${hint}`),
      );
    }
  });
}
