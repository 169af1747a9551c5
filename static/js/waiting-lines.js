/**
 * The waiting page's lines: the topic and language choices read from
 * GET /api/queues, the places to turn to instead, and times in plain words.
 *
 * Only open, accepting lines can be picked; the others stay in the list,
 * disabled, saying when they open and where to turn meanwhile, so nobody
 * has to guess why a topic is missing.
 */

import { format } from "./page.js";

const lang = document.documentElement.lang || "ko";

/** Return the text of a {ko, en} pair in the page's language. */
export function localized(pair) {
  return pair?.[lang] || pair?.ko || pair?.en || "";
}

/** Return an estimate in words: "about 5 min", "less than a minute", or null. */
export function etaWords(seconds, strings) {
  if (seconds === null || seconds === undefined) return null;
  if (seconds < 60) return strings["eta.soon"];
  return format(strings["eta.minutes"], { minutes: Math.round(seconds / 60) });
}

/** Return a time already waited in words: "less than a minute", "12 min", "1 h 5 min". */
export function waitedWords(ms, strings) {
  const minutes = Math.floor(Math.max(0, ms) / 60_000);
  if (minutes < 1) return strings["waited.soon"];
  if (minutes < 60) return format(strings["waited.minutes"], { minutes });
  return format(strings["waited.hours"], { hours: Math.floor(minutes / 60), minutes: minutes % 60 });
}

/** Return a moment as "today at 09:00", "tomorrow at 09:00" or "Tuesday 3 March at 09:00". */
export function whenWords(ms, strings) {
  const at = new Date(ms);
  const time = new Intl.DateTimeFormat(lang, { hour: "numeric", minute: "2-digit" }).format(at);
  const midnight = (d) => new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
  const days = Math.round((midnight(at) - midnight(new Date())) / 86_400_000);
  if (days <= 0) return format(strings["when.today"], { time });
  if (days === 1) return format(strings["when.tomorrow"], { time });
  const day = new Intl.DateTimeFormat(lang, { weekday: "long", month: "long", day: "numeric" }).format(at);
  return format(strings["when.later"], { day, time });
}

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children);
  return node;
}

function alternativeItem(alternative) {
  const label = localized(alternative.label);
  const links = [];
  if (alternative.phone) {
    const dial = alternative.phone.replace(/[^\d+]/g, "");
    links.push(element("a", { href: `tel:${dial}`, class: "alt-link" }, label, " ", element("span", { class: "number" }, alternative.phone)));
  }
  if (alternative.url) {
    const host = new URL(alternative.url).host;
    const text = alternative.phone ? host : [label, " ", element("span", { class: "number" }, host)];
    links.push(element("a", { href: alternative.url, class: "alt-link", target: "_blank", rel: "noopener noreferrer" }, ...[text].flat()));
  }
  return element("li", {}, ...links);
}

/** Fill ``list`` with tel:/web links to the alternatives, the emergency number last; hide it when empty. */
export function renderAlternatives(list, alternatives, { emergency } = {}) {
  const all = [...(alternatives ?? [])];
  if (emergency?.phone) all.push({ label: { [lang]: emergency.label }, phone: emergency.phone });
  // Pages re-render often (every poll): rebuild only on a change, or a focused link loses the focus.
  const key = JSON.stringify(all);
  if (list.dataset.key === key) return;
  list.dataset.key = key;
  list.replaceChildren(...all.map(alternativeItem));
  list.hidden = all.length === 0;
}

/** Every queue's alternatives once each (a helpline several lines list is shown once). */
export function allAlternatives(queues) {
  const seen = new Set();
  return queues
    .flatMap((queue) => queue.alternatives ?? [])
    .filter((alternative) => {
      const key = alternative.phone ?? alternative.url;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
}

/** The topic and language radios of the join form. */
export class LinePicker {
  constructor({ topicField, topicOptions, languageField, languageOptions, config, strings, onChange }) {
    Object.assign(this, { topicField, topicOptions, languageField, languageOptions, config, strings, onChange });
    this.queues = null; // null until GET /api/queues answers: the form then joins as it always did
    this.shape = "";
    topicOptions.addEventListener("change", () => this._picked());
    languageOptions.addEventListener("change", () => this.onChange?.());
  }

  /** Show a fresh list of queues, keeping the customer's choice where it is still open. */
  update(queues) {
    this.queues = queues.length ? queues : null;
    if (!this.queues) return;
    const shape = JSON.stringify(queues.map((q) => [q.queueId, q.accepting, q.languages]));
    const keep = this.selectedQueue();
    if (shape !== this.shape) this._buildTopics();
    this.shape = shape;
    this._select(keep);
    for (const queue of queues) this._describe(queue);
    this.topicField.hidden = queues.length < 2 && queues[0].accepting;
    this._buildLanguages();
  }

  /** Return the queue picked, or null (none open, or not loaded). */
  selectedQueue() {
    const checked = this.topicOptions.querySelector("input:checked");
    return this.queues?.find((q) => q.queueId === checked?.value) ?? null;
  }

  selectedLanguage() {
    return this.languageOptions.querySelector("input:checked")?.value ?? null;
  }

  /** Return whether the customer can join some line now (true while the list is unknown). */
  canJoin() {
    return !this.queues || this.queues.some((q) => q.accepting);
  }

  /**
   * Return the join body's queueId/language. What the server would choose by
   * itself is left out, so a customer who picks nothing sends what the page
   * always sent: the default queue, its first language.
   */
  choice() {
    const queue = this.selectedQueue();
    if (!queue) return {};
    const body = {};
    if (queue.queueId !== this.config.defaultQueueId) body.queueId = queue.queueId;
    const language = this.selectedLanguage();
    if (language && language !== queue.languages[0]) body.language = language;
    return body;
  }

  queue(queueId) {
    return this.queues?.find((q) => q.queueId === queueId) ?? null;
  }

  // --- Topics ---------------------------------------------------------------

  _buildTopics() {
    const options = this.queues.map((queue) => {
      const id = `queue-${queue.queueId}`;
      const input = element("input", {
        type: "radio",
        name: "queueId",
        id,
        value: queue.queueId,
        disabled: !queue.accepting,
        "aria-describedby": `${id}-meta`,
      });
      const label = element(
        "label",
        { for: id },
        element("span", { class: "option-name", "data-name": "" }),
        element("span", { class: "option-meta", id: `${id}-meta` }),
      );
      const instead = element(
        "div",
        { class: "option-instead", hidden: true },
        element("p", {}, this.strings["queue.instead"]),
        element("ul", { class: "alternatives" }),
      );
      return element("div", { class: "option", "data-queue": queue.queueId }, input, label, instead);
    });
    this.topicOptions.replaceChildren(...options);
  }

  _select(keep) {
    const accepting = this.queues.filter((q) => q.accepting);
    const pick =
      accepting.find((q) => q.queueId === keep?.queueId) ??
      accepting.find((q) => q.queueId === this.config.defaultQueueId) ??
      accepting[0];
    for (const input of this.topicOptions.querySelectorAll("input")) input.checked = input.value === pick?.queueId;
  }

  _describe(queue) {
    const option = this.topicOptions.querySelector(`.option[data-queue="${CSS.escape(queue.queueId)}"]`);
    if (!option) return;
    option.dataset.state = queue.accepting ? "open" : queue.open ? "full" : "closed";
    option.querySelector("[data-name]").textContent = queue.name;
    option.querySelector(".option-meta").textContent = this._meta(queue);
    const instead = option.querySelector(".option-instead");
    // With no line open at all, the form lists every alternative once, above the lines.
    instead.hidden = queue.accepting || !queue.alternatives?.length || !this.canJoin();
    renderAlternatives(instead.querySelector("ul"), queue.accepting ? [] : queue.alternatives);
  }

  _meta(queue) {
    if (!queue.open) {
      if (!queue.opensAt) return this.strings["queue.closed"];
      return format(this.strings["queue.closed_opens"], { when: whenWords(queue.opensAt, this.strings) });
    }
    if (!queue.accepting) return this.strings["queue.full"];
    return this._lineMeta(queue);
  }

  _lineMeta(line) {
    const parts = [];
    if (line.waiting) parts.push(format(this.strings["queue.waiting"], { count: line.waiting }));
    const eta = etaWords(line.estimatedWaitSeconds, this.strings);
    if (eta) parts.push(format(this.strings["queue.eta"], { eta }));
    else if (line.estimatedWaitReason === "no_counselor_online") parts.push(this.strings["queue.no_counselor_online"]);
    return parts.join(" · ");
  }

  _picked() {
    this._buildLanguages();
    this.onChange?.();
  }

  // --- Languages ------------------------------------------------------------

  _buildLanguages() {
    const queue = this.selectedQueue();
    const languages = queue?.languages ?? [];
    const keep = this.selectedLanguage();
    // The customer's earlier pick, else the page's language, else the queue's first.
    const pick = [keep, lang].find((code) => languages.includes(code)) ?? languages[0];
    const shown = [...this.languageOptions.querySelectorAll("input")].map((input) => input.value);
    if (shown.join() !== languages.join()) {
      // Rebuilt only when the languages differ: a rebuild would drop the keyboard focus.
      this.languageOptions.replaceChildren(...languages.map((code) => this._languageOption(code, code === pick)));
      this.languageField.hidden = languages.length < 2;
    }
    // Each language's wait, where they differ; the same words under every option would only be noise.
    const metas = languages.map((code) => this._lineMeta(queue.lines?.find((l) => l.language === code) ?? {}));
    const same = new Set(metas).size < 2;
    languages.forEach((code, index) => {
      const meta = this.languageOptions.querySelector(`#language-${CSS.escape(code)}-meta`);
      meta.textContent = same ? "" : metas[index];
      meta.hidden = same || !metas[index];
    });
  }

  _languageOption(code, checked) {
    const id = `language-${code}`;
    const input = element("input", { type: "radio", name: "language", id, value: code, "aria-describedby": `${id}-meta` });
    input.checked = checked;
    const label = element(
      "label",
      { for: id },
      element("span", { class: "option-name", lang: code }, this.config.languageNames?.[code] ?? code),
      element("span", { class: "option-meta", id: `${id}-meta` }),
    );
    return element("div", { class: "option" }, input, label);
  }
}
