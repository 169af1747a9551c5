/** Small helpers both pages share: their json_script data, REST calls, the tier indicator. */

/** Replace %(name)s placeholders in a translated string. */
export function format(template, values = {}) {
  return template.replace(/%\((\w+)\)s/g, (_, key) => String(values[key] ?? ""));
}

/** Read the page's json_script blocks. */
export function pageData() {
  const read = (id) => JSON.parse(document.getElementById(id).textContent);
  return { config: read("hearo-config"), strings: read("hearo-strings") };
}

/** Show the connection tier in the page's indicator. */
export function showTier(element, strings, config, tier, transport, healthy) {
  element.dataset.tier = tier ?? (healthy ? "connecting" : "offline");
  element.dataset.transport = transport ?? "";
  element.dataset.healthy = String(healthy);
  let text;
  if (!tier) text = healthy ? strings["tier.connecting"] : strings["tier.offline"];
  else if (tier === "poll" && !healthy) text = strings["tier.offline"];
  else text = format(strings[`tier.${tier}`], { transport, seconds: config.pollSeconds });
  element.querySelector("#tier-text").textContent = text;
}

/** An error a REST call raised: the server's {error, detail, ...}, or a network failure. */
export class ApiError extends Error {
  constructor(status, code, detail, body = {}) {
    super(typeof detail === "string" ? detail : code);
    this.status = status;
    this.code = code;
    this.detail = detail;
    // The whole answer: a refusal carries more than {error, detail} (opensAt, alternatives).
    this.body = body;
    // 401/403: retrying will not help (ended visit, signed out).
    this.fatal = status === 401 || status === 403;
  }
}

/** fetch() JSON; throw ApiError for any non-2xx answer (status 0: network). */
export async function api(method, url, { headers = {}, body } = {}) {
  let response;
  try {
    response = await fetch(url, {
      method,
      credentials: "same-origin",
      headers: { Accept: "application/json", ...(body !== undefined ? { "Content-Type": "application/json" } : {}), ...headers },
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
  } catch {
    throw new ApiError(0, "network", "network");
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, data.error ?? "error", data.detail ?? response.statusText, data);
  return data;
}
