/**
 * The web chat page `tuneline serve` shows at `/`: a conversation with the served model, answers
 * streamed as they are made, each rated up or down (with an optional comment and corrected answer)
 * through `POST /v1/feedback`. Plain HTML, CSS and a script from this server only (a strict
 * Content-Security-Policy), no build step.
 */

export const CHAT_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Chat</title>
<link rel="stylesheet" href="/chat.css">
</head>
<body>
<header><h1>Chat</h1><span id="model" aria-live="polite"></span></header>
<main id="log" aria-live="polite"></main>
<form id="ask">
  <label for="question">Your question</label>
  <textarea id="question" rows="3" required maxlength="8000"></textarea>
  <details><summary>API key</summary><label for="key">Key, when the server asks for one</label><input id="key" type="password" autocomplete="off"></details>
  <button id="send" type="submit">Send</button>
</form>
<p id="error" role="alert"></p>
<script src="/chat.js"></script>
</body>
</html>
`;

export const CHAT_CSS = `
body { font: 16px/1.5 system-ui, sans-serif; max-width: 46rem; margin: 0 auto; padding: 1rem; color: #1b1b1b; }
header { display: flex; align-items: baseline; gap: 1rem; } h1 { font-size: 1.3rem; } #model { color: #555; font-size: .85rem; }
.turn { margin: .8rem 0; padding: .6rem .8rem; border-radius: .5rem; white-space: pre-wrap; }
.user { background: #eef3ff; } .assistant { background: #f4f4f4; }
.sources { color: #555; font-size: .8rem; margin-top: .3rem; }
.rate { margin-top: .4rem; display: flex; gap: .4rem; flex-wrap: wrap; align-items: center; }
.rate button { font-size: .9rem; } .rate textarea { width: 100%; }
textarea, input { width: 100%; box-sizing: border-box; font: inherit; } label { display: block; margin-top: .5rem; font-size: .9rem; }
#send { margin-top: .5rem; padding: .4rem 1.2rem; } #error { color: #a00000; }
`;

export const CHAT_JS = `
const log = document.getElementById('log');
const form = document.getElementById('ask');
const question = document.getElementById('question');
const send = document.getElementById('send');
const error = document.getElementById('error');
const keyInput = document.getElementById('key');
keyInput.value = sessionStorage.getItem('tuneline-key') || '';
const messages = [];
let model = null;

const headers = () => {
  const h = { 'Content-Type': 'application/json' };
  if (keyInput.value) { sessionStorage.setItem('tuneline-key', keyInput.value); h.Authorization = 'Bearer ' + keyInput.value; }
  return h;
};
const problem = async (response) => {
  try { return (await response.json()).error.message; } catch { return response.status + ' ' + response.statusText; }
};
const turn = (role, text) => {
  const div = document.createElement('div');
  div.className = 'turn ' + role;
  div.textContent = text;
  log.appendChild(div);
  return div;
};

async function loadModel() {
  const response = await fetch('/v1/models', { headers: headers() });
  if (!response.ok) { error.textContent = await problem(response); return; }
  model = (await response.json()).data[0]?.id ?? null;
  document.getElementById('model').textContent = model ? 'model ' + model : 'no model loaded yet';
}

function rating(answerDiv, completionId) {
  const box = document.createElement('div');
  box.className = 'rate';
  const up = document.createElement('button'); up.type = 'button'; up.className = 'rate-up'; up.textContent = 'Helpful'; up.setAttribute('aria-label', 'Rate this answer helpful');
  const down = document.createElement('button'); down.type = 'button'; down.className = 'rate-down'; down.textContent = 'Not helpful'; down.setAttribute('aria-label', 'Rate this answer not helpful');
  box.append(up, down);
  answerDiv.after(box);
  const submit = async (body) => {
    const response = await fetch('/v1/feedback', { method: 'POST', headers: headers(), body: JSON.stringify({ completion_id: completionId, ...body }) });
    box.textContent = response.ok ? 'Thank you: your rating is saved.' : 'Not saved: ' + (await problem(response));
    box.classList.add(response.ok ? 'feedback-sent' : 'feedback-failed');
  };
  up.onclick = () => submit({ rating: 'up' });
  down.onclick = () => {
    box.replaceChildren();
    const comment = document.createElement('textarea'); comment.className = 'comment'; comment.placeholder = 'What was wrong? (optional)'; comment.setAttribute('aria-label', 'Comment');
    const correction = document.createElement('textarea'); correction.className = 'correction'; correction.placeholder = 'The right answer (optional)'; correction.setAttribute('aria-label', 'Corrected answer');
    const save = document.createElement('button'); save.type = 'button'; save.className = 'rate-save'; save.textContent = 'Send rating';
    box.append(comment, correction, save);
    save.onclick = () => submit({ rating: 'down', ...(comment.value ? { comment: comment.value } : {}), ...(correction.value ? { correction: correction.value } : {}) });
  };
}

form.onsubmit = async (event) => {
  event.preventDefault();
  const text = question.value.trim();
  if (!text) return;
  if (!model) await loadModel();
  error.textContent = '';
  send.disabled = true;
  question.value = '';
  turn('user', text);
  messages.push({ role: 'user', content: text });
  const answerDiv = turn('assistant', '');
  let answer = '';
  let completionId = null;
  try {
    const response = await fetch('/v1/chat/completions', { method: 'POST', headers: headers(), body: JSON.stringify({ model, messages, stream: true }) });
    if (!response.ok) throw new Error(await problem(response));
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf('\\n\\n')) >= 0) {
        const event = buffer.slice(0, end); buffer = buffer.slice(end + 2);
        const data = event.replace(/^data: /, '');
        if (data === '[DONE]') continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        completionId = chunk.id;
        if (chunk.tuneline?.known_pairs?.length) {
          const sources = document.createElement('div'); sources.className = 'sources';
          sources.textContent = 'Based on: ' + chunk.tuneline.known_pairs.map((p) => p.question).join(' | ');
          answerDiv.after(sources);
        }
        answer += chunk.choices[0]?.delta?.content ?? '';
        answerDiv.textContent = answer;
      }
    }
    messages.push({ role: 'assistant', content: answer });
    answerDiv.dataset.completionId = completionId;
    rating(answerDiv, completionId);
  } catch (err) {
    messages.pop();
    answerDiv.remove();
    error.textContent = err.message;
  } finally {
    send.disabled = false;
    question.focus();
  }
};
loadModel();
`;
