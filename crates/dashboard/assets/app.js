// Keyward's dashboard: what must happen without a reload. Every change goes to the /v1
// API as JSON with the session cookie, from this origin, so the API's rules — CSRF,
// rate limits, step-up, the audit trail — hold unchanged. A key's plaintext lives only in
// the show-once panel's text: never in the URL, the history or storage, and it is wiped
// when the page is left.
"use strict";

(() => {
  const BASE = "/dashboard";

  /** A request to the API; resolves to { ok, status, data }. */
  async function api(method, path, body) {
    const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
    // A cookie-authenticated POST or PATCH must be JSON, even without a body (CSRF).
    if (body !== undefined || (method !== "GET" && method !== "DELETE")) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body === undefined ? {} : body);
    }
    const response = await fetch(path, init);
    const data = response.status === 204 ? null : await response.json().catch(() => null);
    const code = data && data.error;
    if (response.status === 403 && code === "step_up_required") {
      if (await stepUp()) return api(method, path, body);
      return { ok: false, status: 403, data: { error: "step_up_required", message: "your password is needed for this" } };
    }
    if (response.status === 403 && code === "password_change_required") {
      location.assign(`${BASE}/password`);
    } else if (response.status === 401 && code === "unauthorized") {
      location.assign(`${BASE}/sign-in`);
    }
    return { ok: response.ok, status: response.status, data };
  }

  /** What an error answer says to a person. */
  function messageOf(status, data) {
    if (!data || !data.error) return `The request failed (HTTP ${status}).`;
    const wait = data.retry_after_seconds;
    if (data.error === "rate_limited" && data.tier === "login") {
      return `Too many sign-in attempts. Try again in ${duration(wait)}.`;
    }
    if (data.error === "rate_limited") return `Too many requests. Try again in ${duration(wait)}.`;
    if (data.error === "invalid_credentials") return "Wrong email or password.";
    const text = data.message || data.error;
    return text.charAt(0).toUpperCase() + text.slice(1) + (text.endsWith(".") ? "" : ".");
  }

  function duration(seconds) {
    if (!seconds) return "a moment";
    if (seconds < 90) return `${seconds} seconds`;
    return `${Math.ceil(seconds / 60)} minutes`;
  }

  // --- forms -------------------------------------------------------------------------

  /** The JSON body of a form: `a.b` names nest, `a.0.b` makes arrays, empty fields are left out. */
  function bodyOf(form) {
    const body = {};
    for (const element of form.elements) {
      if (!element.name || element.disabled) continue;
      if (element.type === "radio" && !element.checked) continue;
      if (!accompanied(form, element)) continue;
      if (element.type === "checkbox" && element.dataset.type === "each") {
        // One of a list of choices: the checked ones' values, as an array.
        if (element.checked) (body[element.name] = body[element.name] || []).push(element.value);
        continue;
      }
      const raw = element.type === "checkbox" ? element.checked : element.value;
      if (typeof raw === "string" && raw.trim() === "") {
        // Emptied on purpose (an edit form): what "nothing" is for this field, if it says.
        if (element.dataset.empty !== undefined) set(body, element.name.split("."), JSON.parse(element.dataset.empty));
        continue;
      }
      set(body, element.name.split("."), valueOf(element, raw));
    }
    return body;
  }

  /** Whether the field a `data-with` names (and the one it names, in turn) is filled. */
  function accompanied(form, element) {
    const companion = element.dataset.with && form.elements.namedItem(element.dataset.with);
    if (!companion) return true;
    return companion.value.trim() !== "" && accompanied(form, companion);
  }

  function valueOf(element, raw) {
    switch (element.dataset.type) {
      case "int":
        return Number(raw);
      case "list":
        return raw.split(/[,\n]/).map((item) => item.trim()).filter(Boolean);
      case "routes":
        // One rule a line: methods (comma-separated, * for all), a path pattern, scopes.
        return raw
          .split("\n")
          .map((line) => line.trim())
          .filter(Boolean)
          .map((line) => {
            const [methods, path, ...scopes] = line.split(/\s+/);
            if (!path) throw new FieldError(element.name, `needs methods and a path: “${line}”`);
            return {
              methods: methods === "*" ? [] : methods.split(",").filter(Boolean),
              path,
              scopes: scopes.join(" ").split(/[\s,]+/).filter(Boolean),
            };
          });
      case "json":
        try {
          return JSON.parse(raw);
        } catch {
          throw new FieldError(element.name, "is not valid JSON");
        }
      case "utc":
        // A datetime-local value, read as UTC (the label says so).
        return raw.length === 16 ? `${raw}:00Z` : `${raw}Z`;
      default:
        return raw;
    }
  }

  function set(target, path, value) {
    let here = target;
    path.forEach((part, i) => {
      if (i === path.length - 1) {
        here[part] = value;
        return;
      }
      // A parent another field emptied (`null`) is filled after all.
      if (here[part] === undefined || here[part] === null) here[part] = /^\d+$/.test(path[i + 1]) ? [] : {};
      here = here[part];
    });
  }

  class FieldError extends Error {
    constructor(field, message) {
      super(message);
      this.field = field;
    }
  }

  function clearErrors(scope) {
    scope.querySelectorAll("[data-error], [data-error-for]").forEach((slot) => (slot.textContent = ""));
    scope.querySelectorAll("[aria-invalid]").forEach((input) => input.removeAttribute("aria-invalid"));
  }

  /** Puts each field's message beside its field, and the whole message in the form's alert. */
  function showErrors(scope, status, data) {
    const alert = scope.querySelector("[data-error]");
    let placed = 0;
    for (const detail of (data && data.details) || []) {
      const slot = scope.querySelector(`[data-error-for="${CSS.escape(detail.field)}"]`);
      if (!slot) continue;
      slot.textContent = detail.message;
      const input = scope.querySelector(`[name="${CSS.escape(detail.field)}"]`);
      if (input) input.setAttribute("aria-invalid", "true");
      if (placed++ === 0 && input) input.focus();
    }
    // A form may say what a 404 means for it (a used or expired link).
    const gone = status === 404 && scope.dataset && scope.dataset.notFound;
    if (alert) alert.textContent = gone || messageOf(status, data);
  }

  function checkSameAs(form) {
    for (const input of form.querySelectorAll("[data-same-as]")) {
      const other = form.elements.namedItem(input.dataset.sameAs);
      if (other && other.value !== input.value) {
        throw new FieldError(input.dataset.sameAs, "the two passwords differ");
      }
    }
  }

  async function submit(form, submitter) {
    clearErrors(form);
    let body;
    try {
      checkSameAs(form);
      body = bodyOf(form);
    } catch (error) {
      if (!(error instanceof FieldError)) throw error;
      showErrors(form, 400, { error: "validation_failed", message: `${error.field}: ${error.message}`,
        details: [{ field: error.field, message: error.message }] });
      return;
    }
    return perform(form, body, form, submitter);
  }

  async function press(button) {
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
    const scope = button.closest("section, form, main") || document;
    clearErrors(scope);
    const body = button.dataset.body ? JSON.parse(button.dataset.body) : undefined;
    return perform(button, body, scope, button);
  }

  /**
   * The call `origin`'s `data-api` names, with `body`; then what its `data-then` says, or
   * the refusal shown in `scope`. `control` is busy meanwhile.
   */
  async function perform(origin, body, scope, control) {
    const [method, path] = origin.dataset.api.split(" ");
    busy(control, true);
    let answer;
    try {
      answer = await api(method, path, body);
    } catch {
      answer = { ok: false, status: 0, data: { error: "network", message: "Keyward could not be reached; nothing was changed" } };
    } finally {
      busy(control, false);
    }
    if (answer.ok) await then(origin.dataset.then, answer.data, origin);
    else showErrors(scope, answer.status, answer.data);
  }

  function busy(control, on) {
    if (!control) return;
    control.disabled = on;
    control.setAttribute("aria-busy", on ? "true" : "false");
  }

  /**
   * What follows a success: `reload`, `go:<path>`, `signed-in`, `show-once`, `done` (the
   * form gives way to the `[data-done-panel]` beside it).
   */
  async function then(what, data, origin) {
    if (what === "reload") return location.reload();
    if (what === "done") {
      const form = origin.closest("form");
      const done = form.parentElement.querySelector("[data-done-panel]");
      form.hidden = true;
      done.hidden = false;
      return done.focus();
    }
    if (what && what.startsWith("go:")) return location.assign(what.slice(3));
    if (what === "signed-in") return signedIn(data, origin);
    if (what === "show-once") return showOnce(data, origin);
    if (what === "added") {
      // Without a mailer, the invitation's link, once, to pass on; with one, a word.
      if (data && data.accept_url) return showOnce({ key: data.accept_url }, origin);
      const notice = origin.closest("form").querySelector("[data-notice]");
      notice.textContent = `${data.invitation.email} was invited: they join when they accept the link mailed to them.`;
    }
  }

  // --- signing in -------------------------------------------------------------------

  /**
   * After a login: to the password page if it must change; else, for a person in several
   * accounts who has not chosen one, the choice (the session just opened, for the oldest
   * membership, is ended, and signing in again opens one for the account chosen).
   */
  async function signedIn(data, form) {
    if (data.password_change_required) return location.assign(`${BASE}/password`);
    // A login of no account (yet): what waits for it.
    if (!data.account) return location.assign(`${BASE}/welcome`);
    const memberships = data.memberships || [];
    const chooser = form.querySelector("[data-accounts]");
    if (memberships.length < 2 || !chooser || form.querySelector("input[name=account_id]:checked")) {
      return location.assign(BASE);
    }
    await api("POST", "/v1/auth/logout");
    chooser.replaceChildren(...memberships.map((m) => accountChoice(m, m.account_id === data.account.id)));
    chooser.closest("fieldset").hidden = false;
    form.querySelector("button[type=submit]").textContent = "Continue";
    chooser.querySelector("input:checked").focus();
  }

  function accountChoice(membership, checked) {
    const id = `account-${membership.account_id}`;
    const input = Object.assign(document.createElement("input"), {
      type: "radio", name: "account_id", value: membership.account_id, id, checked,
    });
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = `${membership.name} (${membership.role})`;
    const choice = document.createElement("div");
    choice.className = "check";
    choice.append(input, label);
    return choice;
  }

  // --- the show-once panel ----------------------------------------------------------

  async function showOnce(issued, origin) {
    const panel = document.getElementById("show-once");
    panel.querySelector("[data-plaintext]").textContent = issued.key;
    const after = panel.dataset.after || `${BASE}/keys/${encodeURIComponent(issued.id || "")}`;
    panel.querySelector("[data-done]").setAttribute("href", after);
    // What made the key goes away: the panel is what is left to act on.
    const maker = origin.closest("#create-key, #create-account-key, #add-person, .actions-card");
    if (maker) maker.hidden = true;
    panel.hidden = false;
    panel.focus();
    if (issued.rotated_from) {
      const old = await api("GET", `/v1/keys/${encodeURIComponent(issued.rotated_from)}`);
      const note = panel.querySelector("[data-old-key]");
      if (old.ok && old.data.expires_at) {
        note.textContent = `The old key keeps working until ${readable(old.data.expires_at)}.`;
      } else if (old.ok) {
        note.textContent = "The old key has stopped working.";
      }
      note.hidden = false;
    }
  }

  function readable(rfc3339) {
    return `${rfc3339.slice(0, 10)} ${rfc3339.slice(11, 16)} UTC`;
  }

  function forgetPlaintext() {
    document.querySelectorAll("[data-plaintext]").forEach((slot) => (slot.textContent = ""));
  }

  // --- step-up ------------------------------------------------------------------------

  /** Asks for the password again; resolves true once the API has accepted it. */
  function stepUp() {
    const dialog = document.getElementById("step-up");
    const form = dialog.querySelector("form");
    const input = form.elements.namedItem("password");
    clearErrors(form);
    input.value = "";
    return new Promise((resolve) => {
      const finish = (confirmed) => {
        form.removeEventListener("submit", onSubmit);
        cancel.removeEventListener("click", onCancel);
        dialog.removeEventListener("cancel", onCancel);
        input.value = "";
        dialog.close();
        resolve(confirmed);
      };
      const onSubmit = async (event) => {
        event.preventDefault();
        clearErrors(form);
        const answer = await api("POST", "/v1/account/verify-password", { password: input.value });
        if (answer.ok) finish(true);
        else showErrors(form, answer.status, answer.data);
      };
      const onCancel = (event) => {
        event.preventDefault();
        finish(false);
      };
      const cancel = form.querySelector("[data-cancel]");
      form.addEventListener("submit", onSubmit);
      cancel.addEventListener("click", onCancel);
      dialog.addEventListener("cancel", onCancel);
      dialog.showModal();
      input.focus();
    });
  }

  // --- wiring ---------------------------------------------------------------------------

  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.api) return;
    event.preventDefault();
    submit(form, event.submitter);
  });

  document.addEventListener("click", async (event) => {
    const target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    const button = target.closest("button[data-api]");
    if (button) return press(button);
    if (target.closest("[data-sign-out]")) {
      const answer = await api("POST", "/v1/auth/logout").catch(() => null);
      // Signed out only when the API says so: a session that lives on is not left behind
      // a sign-in page.
      if (answer && (answer.ok || answer.status === 401)) return location.assign(`${BASE}/sign-in`);
      return window.alert(`You are still signed in: ${answer ? messageOf(answer.status, answer.data) : "Keyward could not be reached."}`);
    }
    const copy = target.closest("[data-copy]");
    if (copy) {
      const text = document.querySelector(copy.dataset.copy).textContent;
      await navigator.clipboard.writeText(text).catch(() => null);
      const note = copy.closest("section").querySelector("[data-copied]");
      if (note) note.hidden = false;
      return;
    }
    const done = target.closest("[data-done]");
    if (done) {
      event.preventDefault();
      forgetPlaintext();
      // Replace: the page that showed the key is not one step back in the history.
      location.replace(done.getAttribute("href"));
    }
  });

  // Leaving the page (or the back/forward cache keeping it) forgets the plaintext.
  window.addEventListener("pagehide", forgetPlaintext);
})();
