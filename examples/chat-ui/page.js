// What the example pages share: `$`, the API's base URL from the query, and how a page shows
// its state.

export const $ = (id) => document.getElementById(id);

/** The `api` query parameter (default: this origin), without a trailing slash. */
export function apiBase(params) {
  return (params.get("api") || location.origin).replace(/\/+$/, "");
}

/** A page's setState(state, detail) for its `labels`: the state on <body data-state> and
 * #status, its label in #status and `detail` in #detail (`{ detail: false }`: a page whose
 * #detail line shows something else). */
export function stateSetter(labels, { detail = true } = {}) {
  return (state, text = "") => {
    document.body.dataset.state = state;
    $("status").dataset.state = state;
    $("status").textContent = labels[state];
    if (detail) $("detail").textContent = text;
  };
}
