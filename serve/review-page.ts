/**
 * The review page `tuneline serve` shows at `/review`: a reviewer opens the link `tuneline review
 * invite` prints (`/review#token=...`; the fragment never reaches a server log), picks a run waiting
 * for review, and judges its sampled answers one at a time (question, the model's answer, the
 * reference): accept, reject, or correct with the right answer. Each verdict goes to the run through
 * `POST /v1/reviews/:run/votes`; a refused vote shows the run's reason. Plain HTML, CSS and a script
 * from this server only (a strict Content-Security-Policy), no build step.
 */

export const REVIEW_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Review answers</title>
<link rel="stylesheet" href="/chat.css">
<link rel="stylesheet" href="/review.css">
</head>
<body>
<header><h1>Review answers</h1><span id="reviewer" aria-live="polite"></span></header>
<form id="token-form" hidden>
  <label for="token">Reviewer token (from <code>tuneline review invite</code>)</label>
  <input id="token" type="password" autocomplete="off" required>
  <button type="submit">Open</button>
</form>
<section id="runs" hidden><h2>Runs waiting for review</h2><ul id="run-list"></ul></section>
<section id="review" hidden>
  <p id="standing" aria-live="polite"></p>
  <article id="item" hidden>
    <p id="position"></p>
    <h2>Question</h2><p id="question" class="turn user"></p>
    <h2>The model's answer</h2><p id="answer" class="turn assistant"></p>
    <h2>Reference answer</h2><p id="reference" class="turn reference"></p>
    <label for="comment">Comment (optional)</label>
    <textarea id="comment" rows="2" maxlength="4000"></textarea>
    <div class="verdicts">
      <button id="accept" type="button">Accept</button>
      <button id="reject" type="button">Reject</button>
      <button id="correct" type="button">Correct it</button>
    </div>
    <div id="correction-box" hidden>
      <label for="correction">The right answer</label>
      <textarea id="correction" rows="4" maxlength="8000"></textarea>
      <button id="send-correction" type="button">Send the correction</button>
    </div>
  </article>
  <p id="done" hidden></p>
</section>
<p id="error" role="alert"></p>
<script src="/review.js"></script>
</body>
</html>
`;

export const REVIEW_CSS = `
h2 { font-size: .95rem; margin: .8rem 0 .2rem; color: #444; }
.reference { background: #f1f8ef; }
.verdicts { display: flex; gap: .5rem; margin-top: .8rem; } .verdicts button, #send-correction { padding: .4rem 1.1rem; }
#standing { font-size: .9rem; color: #333; } #position { color: #555; font-size: .85rem; }
#done { font-weight: 600; }
`;

export const REVIEW_JS = `
const $ = (id) => document.getElementById(id);
const error = $('error');
const KEY = 'tuneline-reviewer-token';
const fromLink = new URLSearchParams(location.hash.slice(1)).get('token');
if (fromLink) { sessionStorage.setItem(KEY, fromLink); history.replaceState(null, '', location.pathname + location.search); }
let run = new URLSearchParams(location.search).get('run');
let view = null;

const problem = async (response) => {
  try { return (await response.json()).error.message; } catch { return response.status + ' ' + response.statusText; }
};
async function call(path, init = {}) {
  const response = await fetch(path, { ...init, headers: { 'Content-Type': 'application/json', 'X-Reviewer-Token': sessionStorage.getItem(KEY) || '' } });
  if (response.status === 401) { sessionStorage.removeItem(KEY); $('token-form').hidden = false; }
  if (!response.ok) throw new Error(await problem(response));
  return response.json();
}
const percent = (x) => (x * 100).toFixed(1) + '%';

function show(next) {
  view = next;
  $('review').hidden = false;
  $('runs').hidden = true;
  $('reviewer').textContent = 'reviewing as ' + view.reviewer;
  const satisfaction = view.satisfaction === null ? 'no votes yet' : 'satisfaction ' + percent(view.satisfaction) +
    (view.interval ? ' (95% ' + percent(view.interval[0]) + ' to ' + percent(view.interval[1]) + ')' : '');
  $('standing').textContent = 'Run ' + view.run_id + ': ' + view.status + ', ' + view.rated + ' of ' + view.items +
    ' answers rated, ' + satisfaction + ', target ' + percent(view.target) + '.';
  const item = view.next;
  $('item').hidden = !item;
  $('done').hidden = !!item;
  if (!item) {
    $('done').textContent = view.status !== 'open' ? 'This review is closed: ' + view.status + '.'
      : 'Every answer is rated: the run decides now.';
    return;
  }
  $('position').textContent = 'Answer ' + item.position + ' of ' + view.items;
  $('question').textContent = item.question;
  $('answer').textContent = item.answer;
  $('reference').textContent = item.reference;
  $('comment').value = '';
  $('correction-box').hidden = true;
  $('correction').value = item.answer;
}

async function vote(verdict, correction) {
  error.textContent = '';
  const comment = $('comment').value.trim();
  const buttons = document.querySelectorAll('.verdicts button, #send-correction');
  buttons.forEach((b) => (b.disabled = true));
  try {
    show(await call('/v1/reviews/' + encodeURIComponent(view.run_id) + '/votes', {
      method: 'POST',
      body: JSON.stringify({ item_id: view.next.id, verdict, ...(correction ? { correction } : {}), ...(comment ? { comment } : {}) }),
    }));
  } catch (err) {
    error.textContent = err.message;
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
}
$('accept').onclick = () => vote('accept');
$('reject').onclick = () => vote('reject');
$('correct').onclick = () => { $('correction-box').hidden = false; $('correction').focus(); };
$('send-correction').onclick = () => vote('correct', $('correction').value.trim());

async function open(runId) {
  run = runId;
  show(await call('/v1/reviews/' + encodeURIComponent(runId)));
}

async function start() {
  error.textContent = '';
  if (!sessionStorage.getItem(KEY)) { $('token-form').hidden = false; return; }
  $('token-form').hidden = true;
  try {
    if (run) return await open(run);
    const list = await call('/v1/reviews');
    $('reviewer').textContent = 'reviewing as ' + list.reviewer;
    if (list.data.length === 1) return await open(list.data[0].run_id);
    $('runs').hidden = false;
    const ul = $('run-list');
    ul.replaceChildren();
    if (list.data.length === 0) { ul.textContent = 'No run is waiting for review now.'; return; }
    for (const r of list.data) {
      const li = document.createElement('li');
      const button = document.createElement('button'); button.type = 'button'; button.className = 'run-choice';
      button.textContent = r.run_id + ': ' + r.rated + ' of ' + r.items + ' answers rated';
      button.onclick = () => open(r.run_id).catch((err) => (error.textContent = err.message));
      li.append(button); ul.append(li);
    }
  } catch (err) {
    error.textContent = err.message;
  }
}
$('token-form').onsubmit = (event) => { event.preventDefault(); sessionStorage.setItem(KEY, $('token').value.trim()); start(); };
start();
`;
