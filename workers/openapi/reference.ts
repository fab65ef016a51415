/**
 * The API reference page (GET /docs): one self-contained HTML page rendered
 * on the server from the OpenAPI document, with no script at all (its one
 * inline style is allowed by hash in its own Content-Security-Policy).
 */

type Json = Record<string, unknown>;

const esc = (s: string): string =>
  s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll('"', "&quot;");

/** The little Markdown the document uses: `code` and paragraphs. */
function prose(text: unknown): string {
  if (typeof text !== "string" || text === "") return "";
  return text
    .split(/\n\n+/)
    .map((p) => `<p>${esc(p).replace(/`([^`]+)`/g, "<code>$1</code>")}</p>`)
    .join("");
}

const inline = (text: unknown): string =>
  typeof text === "string" ? esc(text).replace(/`([^`]+)`/g, "<code>$1</code>") : "";

const REF = "#/components/schemas/";
const refName = (ref: unknown): string | undefined =>
  typeof ref === "string" && ref.startsWith(REF) ? ref.slice(REF.length) : undefined;
const schemaLink = (name: string) => `<a href="#schema-${esc(name)}">${esc(name)}</a>`;

const isObject = (v: unknown): v is Json => v !== null && typeof v === "object" && !Array.isArray(v);
const variants = (s: Json): Json[] | undefined =>
  (Array.isArray(s.anyOf) ? s.anyOf : Array.isArray(s.oneOf) ? s.oneOf : undefined) as Json[] | undefined;
const isNull = (s: Json) => s.type === "null";
const hasFields = (s: Json) => isObject(s.properties) && Object.keys(s.properties).length > 0;

/** A one-line type: `string`, `integer | null`, `array of Rule`, `"1m" | "5m"`, a link to a component. */
function typeLabel(s: Json): string {
  const ref = refName(s.$ref);
  if (ref) return schemaLink(ref);
  if (Array.isArray(s.enum)) return s.enum.map((v) => `<code>${esc(JSON.stringify(v))}</code>`).join(" | ");
  if ("const" in s) return `<code>${esc(JSON.stringify(s.const))}</code>`;
  const vs = variants(s);
  if (vs) return vs.map((v) => (hasFields(v) ? "object" : typeLabel(v))).join(" | ");
  const types = Array.isArray(s.type) ? (s.type as string[]) : typeof s.type === "string" ? [s.type] : [];
  const label = types.map((t) => {
    if (t === "array" && isObject(s.items)) return `array of ${typeLabel(s.items)}`;
    if (t === "object" && isObject(s.additionalProperties) && !hasFields(s)) {
      const key = isObject(s.propertyNames) ? typeLabel(s.propertyNames) : "string";
      return `map of ${key} → ${typeLabel(s.additionalProperties)}`;
    }
    return t;
  });
  return label.length > 0 ? label.join(" | ") : "any";
}

const CONSTRAINTS: Array<[string, string]> = [
  ["format", "format"],
  ["minLength", "min length"],
  ["maxLength", "max length"],
  ["minimum", "≥"],
  ["exclusiveMinimum", ">"],
  ["maximum", "≤"],
  ["exclusiveMaximum", "<"],
  ["minItems", "min items"],
  ["maxItems", "max items"],
  ["maxProperties", "max keys"],
  ["pattern", "pattern"],
  ["default", "default"],
];

function constraints(s: Json): string {
  const parts: string[] = [];
  const collect = (x: Json) => {
    for (const [k, label] of CONSTRAINTS) {
      if (k === "pattern" && "format" in x) continue; // the format says it
      if (k in x)
        parts.push(
          `<span class="c">${label} <code>${esc(typeof x[k] === "string" && k !== "default" ? (x[k] as string) : JSON.stringify(x[k]))}</code></span>`,
        );
    }
    if (isObject(x.items))
      for (const [k, label] of CONSTRAINTS.slice(1, 3))
        if (k in x.items) parts.push(`<span class="c">items: ${label} <code>${esc(String(x.items[k]))}</code></span>`);
  };
  collect(s);
  for (const v of variants(s) ?? []) if (!hasFields(v) && !v.$ref) collect(v);
  return parts.join(" ");
}

/** The schema's fields (nested objects inline), or its variants, or just its type. */
function schemaBody(s: Json, depth = 0): string {
  if (depth > 6) return "";
  const vs = variants(s);
  if (vs?.some(hasFields)) {
    return `<p class="oneof">One of:</p><ol class="variants">${vs
      .filter((v) => !isNull(v))
      .map((v) => `<li>${hasFields(v) ? fields(v, depth + 1) : typeLabel(v)}</li>`)
      .join("")}</ol>`;
  }
  if (hasFields(s)) return fields(s, depth);
  if (s.type === "array" && isObject(s.items) && hasFields(s.items)) {
    return `<p class="oneof">Array of:</p>${fields(s.items, depth + 1)}`;
  }
  return "";
}

function fields(s: Json, depth: number): string {
  const required = new Set(Array.isArray(s.required) ? (s.required as string[]) : []);
  const rows = Object.entries(s.properties as Record<string, Json>).map(([name, p]) => {
    const nested = refName(p.$ref) ? "" : schemaBody(p, depth + 1);
    return `<li><code class="f">${esc(name)}</code>${required.has(name) ? ' <span class="req">required</span>' : ""} <span class="t">${typeLabel(p)}</span> ${constraints(p)}${p.description ? `<div class="d">${inline(p.description)}</div>` : ""}${nested}</li>`;
  });
  const closed = s.additionalProperties === false ? "" : '<li class="more">… and other fields</li>';
  return `<ul class="fields">${rows.join("")}${closed}</ul>`;
}

/** A schema: its type, and its fields. `components` given, a top-level reference is shown with the fields it names. */
function schemaBlock(s: Json, components?: Record<string, Json>): string {
  const ref = refName(s.$ref);
  const target = ref && components ? components[ref] : undefined;
  const shown = target ?? s;
  const body = ref && !target ? "" : schemaBody(shown);
  return `<div class="schema"><span class="t">${typeLabel(s)}</span> ${constraints(shown)}${shown.description ? `<div class="d">${inline(shown.description)}</div>` : ""}${body}</div>`;
}

const SCHEME_LABELS: Record<string, string> = {
  ingestKey: "an ingest key",
  readKey: "a read key",
  adminKey: "an admin key",
  operatorToken: "the operator token",
  beaconKey: "an ingest key as <code>?key=</code> (text/plain beacons)",
};

function authLine(op: Json): string {
  const sec = op.security as Array<Record<string, unknown>> | undefined;
  if (!sec) return '<p class="auth">No key.</p>';
  const names = sec.flatMap((r) => Object.keys(r)).map((n) => SCHEME_LABELS[n] ?? esc(n));
  const list = names.length > 1 ? `${names.slice(0, -1).join(", ")} or ${names[names.length - 1]}` : names[0];
  return `<p class="auth">Auth: ${list}.</p>`;
}

function parametersTable(params: Json[]): string {
  if (params.length === 0) return "";
  const rows = params.map((p) => {
    const schema = (isObject(p.schema) ? p.schema : (Object.values(p.content as Json)[0] as Json).schema) as Json;
    const type = isObject(p.content) ? `JSON: ${typeLabel(schema)}` : typeLabel(schema);
    return `<tr><td><code>${esc(String(p.name))}</code>${p.required ? ' <span class="req">required</span>' : ""}</td><td>${esc(String(p.in))}</td><td>${type} ${isObject(p.content) ? "" : constraints(schema)}</td><td>${inline(p.description)}</td></tr>`;
  });
  return `<h4>Parameters</h4><table><thead><tr><th>name</th><th>in</th><th>type</th><th>description</th></tr></thead><tbody>${rows.join("")}</tbody></table>`;
}

function contentBlocks(content: unknown, components: Record<string, Json>): string {
  if (!isObject(content)) return "";
  return Object.entries(content)
    .map(
      ([type, m]) =>
        `<div class="media"><code class="mt">${esc(type)}</code>${schemaBlock((m as Json).schema as Json, components)}</div>`,
    )
    .join("");
}

function responsesList(responses: Json, components: Record<string, Json>): string {
  const items = Object.entries(responses).map(([status, r]) => {
    const res = r as Json;
    const error = Number(status) >= 400;
    const body = error
      ? `<div class="d">${prose(res.description)}</div>`
      : `<div class="d">${inline(res.description)}</div>${contentBlocks(res.content, components)}`;
    return `<li class="${error ? "err" : "ok"}"><span class="status">${esc(status)}</span>${body}</li>`;
  });
  return `<h4>Responses</h4><ul class="responses">${items.join("")}</ul><p class="note">Errors are ${schemaLink("Error")} bodies with these codes.</p>`;
}

const METHODS = ["get", "post", "put", "patch", "delete"];

interface Op {
  method: string;
  path: string;
  op: Json;
}

function operationsByTag(doc: Json): Map<string, Op[]> {
  const byTag = new Map<string, Op[]>(((doc.tags as Json[]) ?? []).map((t) => [String(t.name), []]));
  for (const [path, item] of Object.entries(doc.paths as Record<string, Json>)) {
    for (const method of METHODS) {
      const op = item[method] as Json | undefined;
      if (!op) continue;
      const tag = ((op.tags as string[]) ?? ["Other"])[0];
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag)?.push({ method, path, op });
    }
  }
  return byTag;
}

function operationSection({ method, path, op }: Op, components: Record<string, Json>): string {
  const body = op.requestBody as Json | undefined;
  return `<section class="op" id="op-${esc(String(op.operationId))}"><h3><span class="m ${method}">${method.toUpperCase()}</span> <code>${esc(path)}</code></h3><p class="summary">${inline(op.summary)}</p>${prose(op.description)}${authLine(op)}${parametersTable((op.parameters as Json[]) ?? [])}${body ? `<h4>Request body</h4>${prose(body.description)}${contentBlocks(body.content, components)}` : ""}${responsesList(op.responses as Json, components)}</section>`;
}

export const REFERENCE_STYLE = `
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d232b;background:#fff}
main{max-width:980px;margin:0 auto;padding:1.5rem 1.25rem 4rem}
header h1{margin:.2rem 0}header p{margin:.3rem 0}
nav{columns:3 14rem;font-size:.9rem;margin:1rem 0 2rem;padding:1rem;background:#f5f7fa;border-radius:6px}
nav h2{font-size:.95rem;margin:.4rem 0 .2rem;break-after:avoid}nav ul{list-style:none;margin:0 0 .6rem;padding:0}
nav a{text-decoration:none;color:#1f5fbf}nav code{font-size:.8rem}
h2.tag{border-bottom:2px solid #e3e8ef;padding-bottom:.3rem;margin-top:2.5rem}
.op{border:1px solid #e3e8ef;border-radius:6px;padding:.2rem 1rem 1rem;margin:1.25rem 0}
.op h3{font-size:1.05rem;margin:.8rem 0 .2rem}.summary{margin:0 0 .4rem;font-weight:600}
.m{display:inline-block;min-width:3.6rem;text-align:center;border-radius:4px;color:#fff;font-size:.8rem;padding:.05rem .3rem;margin-right:.3rem}
.get{background:#1f7a4d}.post{background:#1f5fbf}.put{background:#8a5a00}.patch{background:#6b4fbf}.delete{background:#b3261e}
code{font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace;background:#f2f4f7;border-radius:3px;padding:0 .2rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{text-align:left;border-bottom:1px solid #eef1f5;padding:.3rem .4rem;vertical-align:top}
h4{margin:1rem 0 .3rem;font-size:.9rem;text-transform:uppercase;letter-spacing:.04em;color:#5b6675}
ul.fields{list-style:none;padding-left:1rem;margin:.2rem 0;border-left:2px solid #eef1f5}ul.fields li{margin:.25rem 0}
.f{font-weight:600}.req{color:#b3261e;font-size:.75rem}.t{color:#5b6675}.c{color:#5b6675;font-size:.8rem;margin-right:.4rem}
.d{color:#3b4450}.d p{margin:.2rem 0}.more{color:#8a94a3;font-style:italic}.oneof{margin:.2rem 0;color:#5b6675}
ol.variants{margin:.2rem 0;padding-left:1.4rem}
ul.responses{list-style:none;padding:0}ul.responses>li{margin:.4rem 0;display:grid;grid-template-columns:3.2rem 1fr;gap:.2rem .6rem}
ul.responses>li>:not(.status){grid-column:2}
.status{font-weight:700;grid-row:span 3}.ok .status{color:#1f7a4d}.err .status{color:#b3261e}.err .d p{margin:0;font-size:.9rem}
.media{margin:.3rem 0}.mt{font-size:.75rem;color:#5b6675}.note{font-size:.8rem;color:#8a94a3}
.schema-def{border-top:1px solid #eef1f5;padding-top:.4rem;margin-top:1rem}.schema-def h3{margin:.2rem 0;font-size:1rem}
`;

/** The page for a document. */
export function renderReference(doc: Json): string {
  const info = doc.info as Json;
  const components = ((doc.components as Json).schemas as Record<string, Json>) ?? {};
  const byTag = operationsByTag(doc);
  const tagDescriptions = new Map(((doc.tags as Json[]) ?? []).map((t) => [String(t.name), t.description]));
  const nav = [...byTag]
    .filter(([, ops]) => ops.length > 0)
    .map(
      ([tag, ops]) =>
        `<h2><a href="#tag-${esc(tag)}">${esc(tag)}</a></h2><ul>${ops
          .map(
            (o) =>
              `<li><a href="#op-${esc(String(o.op.operationId))}"><code>${o.method.toUpperCase()}</code> ${esc(o.path)}</a></li>`,
          )
          .join("")}</ul>`,
    )
    .join("");
  const sections = [...byTag]
    .filter(([, ops]) => ops.length > 0)
    .map(
      ([tag, ops]) =>
        `<h2 class="tag" id="tag-${esc(tag)}">${esc(tag)}</h2>${prose(tagDescriptions.get(tag))}${ops.map((o) => operationSection(o, components)).join("")}`,
    )
    .join("");
  const webhooks = Object.entries((doc.webhooks as Record<string, Json>) ?? {})
    .map(([name, item]) => {
      const op = item.post as Json;
      return `<section class="op" id="webhook-${esc(name)}"><h3><span class="m post">POST</span> <code>${esc(name)}</code> (to your URL)</h3><p class="summary">${inline(op.summary)}</p>${prose(op.description)}${parametersTable((op.parameters as Json[]) ?? [])}<h4>Body</h4>${contentBlocks((op.requestBody as Json).content, components)}</section>`;
    })
    .join("");
  const schemas = Object.entries(components)
    .map(([name, s]) => `<div class="schema-def" id="schema-${esc(name)}"><h3>${esc(name)}</h3>${schemaBlock(s)}</div>`)
    .join("");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(String(info.title))} API reference</title><style>${REFERENCE_STYLE}</style></head>
<body><main>
<header><h1>${esc(String(info.title))} API <small>${esc(String(info.version))}</small></h1><p>${inline(info.summary)}</p>${prose(info.description)}
<p>This page is rendered from the OpenAPI ${esc(String(doc.openapi))} description at <a href="/openapi.json"><code>/openapi.json</code></a>; generate a client from it (e.g. <code>npx openapi-typescript &lt;url&gt;/openapi.json</code>).</p></header>
<nav>${nav}<h2><a href="#webhooks">Webhooks</a></h2><h2><a href="#schemas">Schemas</a></h2></nav>
${sections}
<h2 class="tag" id="webhooks">Webhooks</h2>${webhooks}
<h2 class="tag" id="schemas">Schemas</h2>${schemas}
</main></body></html>`;
}
