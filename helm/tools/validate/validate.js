#!/usr/bin/env node
// Offline checks of the rendered sluice chart, used by scripts/chart-check.sh.
//
//   node validate.js values SCHEMA.json VALUES.json
//       JSON-Schema check of merged values (what `helm install` does with
//       values.schema.json). Exit 1 with the errors if they do not conform.
//   node validate.js manifests RENDERED.json
//       Every object (from `render -o json`) against its Kubernetes (or
//       prometheus-operator) model: the models' schema (types, required
//       fields, enums), plus fields the API types do not declare (helm's
//       client-side validation rejects those), plus cross-object wiring
//       (selectors, named ports, volumes, the config checksum).
//   node validate.js schema-covers SCHEMA.json README.md
//       Every key of README's configuration reference is allowed by the
//       schema under `config` (the schema must never reject what sluice takes).
//   node validate.js tls RENDERED.json SECRET PORT [CA_SECRET:KEY]
//       With tls.enabled: Secret SECRET mounted read-only (no subPath) at
//       /etc/sluice/tls, CA_SECRET's KEY at /etc/sluice/client-ca/ca.crt,
//       container port https = PORT, the proxy Service's https port, probes
//       on the admin port.
//   node validate.js get RENDERED.json KIND NAME POINTER
//       Print one field of one object; POINTER is a JSON pointer such as
//       /data/sluice.yaml or /spec/template/metadata/annotations/checksum~1config.
"use strict";

const fs = require("fs");
const path = require("path");

const MODEL_PACKAGES = ["kubernetes-models", "@kubernetes-models/prometheus-operator"];

function die(msg) {
  process.stderr.write(msg + "\n");
  process.exit(1);
}

function readJSON(file) {
  try {
    return JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    die(`${file}: ${e.message}`);
  }
}

// ---------------------------------------------------------------- values

function checkValues(schemaFile, valuesFile) {
  const Ajv = require("ajv");
  const ajv = new Ajv({ allErrors: true, strict: true, strictTypes: false });
  let validate;
  try {
    validate = ajv.compile(readJSON(schemaFile));
  } catch (e) {
    die(`${schemaFile}: invalid schema: ${e.message}`);
  }
  if (validate(readJSON(valuesFile))) {
    console.log(`values: ${path.basename(valuesFile)} conforms to ${path.basename(schemaFile)}`);
    return;
  }
  for (const e of validate.errors) {
    const where = e.instancePath || "(root)";
    const extra = e.params && e.params.additionalProperty ? `: ${e.params.additionalProperty}` : "";
    process.stderr.write(`values${where}: ${e.message}${extra}\n`);
  }
  process.exit(1);
}

// ------------------------------------------------- declared-field checking
//
// The models validate with the Kubernetes OpenAPI schemas, which do not set
// additionalProperties: false, so a misspelt field (readinesProbe) passes.
// The packages also ship TypeScript declarations listing every field of
// every type; this reads those (a small subset of TypeScript: interfaces,
// type aliases, imports, re-exports) and reports fields they do not declare.

const TOKEN = /\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[A-Za-z_$][\w$]*|-?\d+(?:\.\d+)?|=>|\S)/y;

function tokenize(src) {
  src = src.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
  const out = [];
  TOKEN.lastIndex = 0;
  let m;
  while (TOKEN.lastIndex < src.length && (m = TOKEN.exec(src))) out.push(m[1]);
  return out;
}

const unquote = (t) => (/^["']/.test(t) ? JSON.parse(t[0] === "'" ? `"${t.slice(1, -1)}"` : t) : t);

class DeclFile {
  constructor(file) {
    this.file = file;
    this.imports = {}; // local name -> { spec, name }
    this.types = {}; // declared name -> type
    this.exports = {}; // exported name -> local name
    const toks = tokenize(fs.readFileSync(file, "utf8"));
    this.toks = toks;
    this.i = 0;
    while (this.i < toks.length) this.topLevel();
  }

  peek(o = 0) {
    return this.toks[this.i + o];
  }
  next() {
    return this.toks[this.i++];
  }
  expect(t) {
    const got = this.next();
    if (got !== t) throw new Error(`${this.file}: expected ${t}, got ${got}`);
  }

  skipBalanced(open, close) {
    let depth = 0;
    do {
      const t = this.next();
      if (t === open) depth++;
      else if (t === close) depth--;
      else if (t === undefined) return;
    } while (depth > 0);
  }

  topLevel() {
    const t = this.next();
    if (t === "import") {
      const names = [];
      if (this.peek() === "{") {
        this.next();
        while (this.peek() !== "}") {
          const name = this.next();
          let local = name;
          if (this.peek() === "as") {
            this.next();
            local = this.next();
          }
          names.push([name, local]);
          if (this.peek() === ",") this.next();
        }
        this.next();
      }
      while (this.peek() !== "from" && this.peek() !== undefined) this.next();
      this.next();
      const spec = unquote(this.next());
      for (const [name, local] of names) this.imports[local] = { spec, name };
    } else if (t === "export") {
      let k = this.next();
      if (k === "declare") k = this.next();
      if (k === "interface") {
        const name = this.next();
        if (this.peek() === "<") this.skipBalanced("<", ">");
        if (this.peek() === "extends") while (this.peek() !== "{") this.next();
        this.types[name] = this.parsePrimary();
      } else if (k === "type") {
        const name = this.next();
        this.expect("=");
        this.types[name] = this.parseType();
      } else if (k === "class") {
        while (this.peek() !== "{") this.next();
        this.skipBalanced("{", "}");
      } else if (k === "{") {
        while (this.peek() !== "}") {
          const local = this.next();
          let name = local;
          if (this.peek() === "as") {
            this.next();
            name = this.next();
          }
          this.exports[name] = local;
          if (this.peek() === ",") this.next();
        }
        this.next();
      }
    }
  }

  parseType() {
    if (this.peek() === "|") this.next();
    const members = [this.parsePostfix()];
    while (this.peek() === "|") {
      this.next();
      members.push(this.parsePostfix());
    }
    return members.length === 1 ? members[0] : { k: "union", members };
  }

  parsePostfix() {
    let t = this.parsePrimary();
    while (this.peek() === "[" && this.peek(1) === "]") {
      this.next();
      this.next();
      t = { k: "array", of: t };
    }
    return t;
  }

  parsePrimary() {
    const t = this.next();
    if (t === "(") {
      const inner = this.parseType();
      this.expect(")");
      return inner;
    }
    if (t === "{") {
      const fields = {};
      let index = null;
      while (this.peek() !== "}") {
        if (this.peek() === "[") {
          this.skipBalanced("[", "]");
          this.expect(":");
          index = this.parseType();
        } else {
          const name = unquote(this.next());
          if (this.peek() === "?") this.next();
          if (this.peek() === "(") {
            // A method signature: not data.
            this.skipBalanced("(", ")");
            this.expect(":");
            this.parseType();
          } else {
            this.expect(":");
            fields[name] = this.parseType();
          }
        }
        if (this.peek() === ";" || this.peek() === ",") this.next();
      }
      this.next();
      return { k: "object", fields, index };
    }
    if (/^["'\d-]/.test(t)) return { k: "prim" };
    if (/^[A-Za-z_$]/.test(t)) {
      let args = [];
      if (this.peek() === "<") {
        this.next();
        while (this.peek() !== ">") {
          args.push(this.parseType());
          if (this.peek() === ",") this.next();
        }
        this.next();
      }
      if (t === "Array" || t === "ReadonlyArray") return { k: "array", of: args[0] };
      if (t === "Record") return { k: "object", fields: {}, index: args[1] };
      if (/^(string|number|boolean|any|unknown|object|null|undefined|true|false|never|Date)$/.test(t)) {
        return { k: "prim" };
      }
      return { k: "ref", name: t, from: this };
    }
    throw new Error(`${this.file}: unexpected token ${t}`);
  }
}

const declFiles = new Map();
function declFile(file) {
  if (!declFiles.has(file)) declFiles.set(file, new DeclFile(file));
  return declFiles.get(file);
}

// The .d.ts file of a module specifier, seen from `fromDir`.
function declPath(spec, fromDir) {
  if (spec.startsWith(".")) return path.resolve(fromDir, spec) + ".d.ts";
  const parts = spec.split("/");
  const pkg = spec.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0];
  const sub = parts.slice(pkg.split("/").length).join("/");
  const root = path.dirname(require.resolve(`${pkg}/package.json`, { paths: [fromDir, __dirname] }));
  return path.join(root, sub) + ".d.ts";
}

// Follows references and aliases to a concrete type; "prim" when unknown.
function deref(type, seen = new Set()) {
  while (type && type.k === "ref") {
    const key = `${type.from.file}#${type.name}`;
    if (seen.has(key)) return { k: "prim" };
    seen.add(key);
    const f = type.from;
    if (f.types[type.name]) {
      type = f.types[type.name];
    } else if (f.exports[type.name] && f.types[f.exports[type.name]]) {
      type = f.types[f.exports[type.name]];
    } else if (f.imports[type.name]) {
      const imp = f.imports[type.name];
      let target;
      try {
        target = declFile(declPath(imp.spec, path.dirname(f.file)));
      } catch (e) {
        return { k: "prim" };
      }
      type = { k: "ref", name: target.exports[imp.name] || imp.name, from: target };
    } else {
      return { k: "prim" };
    }
  }
  return type || { k: "prim" };
}

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

function checkFields(value, type, where, errors) {
  type = deref(type);
  if (type.k === "object" && isObject(value)) {
    for (const [k, v] of Object.entries(value)) {
      if (Object.prototype.hasOwnProperty.call(type.fields, k)) {
        checkFields(v, type.fields[k], `${where}.${k}`, errors);
      } else if (type.index) {
        checkFields(v, type.index, `${where}.${k}`, errors);
      } else {
        errors.push(`${where}: unknown field "${k}"`);
      }
    }
  } else if (type.k === "array" && Array.isArray(value)) {
    value.forEach((v, i) => checkFields(v, type.of, `${where}[${i}]`, errors));
  } else if (type.k === "union") {
    const fits = type.members
      .map((m) => deref(m))
      .filter((m) => (Array.isArray(value) ? m.k === "array" : isObject(value) ? m.k === "object" : false));
    if (fits.length === 0) return;
    const tries = fits.map((m) => {
      const e = [];
      checkFields(value, m, where, e);
      return e;
    });
    if (!tries.some((e) => e.length === 0)) errors.push(...tries[0]);
  }
}

// ------------------------------------------------------------ manifests

function modelFor(apiVersion, kind) {
  for (const pkg of MODEL_PACKAGES) {
    let mod;
    try {
      mod = require(`${pkg}/${apiVersion}`);
    } catch (e) {
      continue;
    }
    if (mod[kind]) {
      return { Model: mod[kind], decl: declPath(`${pkg}/${apiVersion}/${kind}`, __dirname) };
    }
  }
  return null;
}

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const LABEL_KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;

// Rules the API server applies beyond the OpenAPI schema, for the fields
// this chart sets.
function checkObjectRules(o, where, errors) {
  const meta = o.metadata || {};
  const name = meta.name || "";
  const nameRule = o.kind === "Service" ? DNS1035_LABEL : DNS1123_SUBDOMAIN;
  if (!nameRule.test(name) || name.length > (o.kind === "Service" ? 63 : 253)) {
    errors.push(`${where}: metadata.name "${name}" is not a valid ${o.kind} name`);
  }
  for (const [k, v] of Object.entries(meta.labels || {})) {
    if (!LABEL_KEY.test(k)) errors.push(`${where}: label key "${k}" is invalid`);
    if (typeof v !== "string" || v.length > 63 || !LABEL_VALUE.test(v)) {
      errors.push(`${where}: label ${k}="${v}" is not a valid label value`);
    }
  }
  for (const [k, v] of Object.entries(meta.annotations || {})) {
    if (typeof v !== "string") errors.push(`${where}: annotation ${k} must be a string`);
  }
  if (o.kind === "Service") {
    const spec = o.spec || {};
    const external = ["NodePort", "LoadBalancer"].includes(spec.type);
    if (spec.externalTrafficPolicy && !external) {
      errors.push(`${where}: externalTrafficPolicy needs type NodePort or LoadBalancer`);
    }
    for (const p of spec.ports || []) {
      if (p.nodePort !== undefined && !external) errors.push(`${where}: nodePort needs type NodePort or LoadBalancer`);
    }
  }
  if (o.kind === "Deployment") {
    const spec = o.spec || {};
    for (const c of (spec.template && spec.template.spec && spec.template.spec.containers) || []) {
      const names = new Set();
      for (const p of c.ports || []) {
        if (p.name && (p.name.length > 15 || !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(p.name) || !/[a-z]/.test(p.name))) {
          errors.push(`${where}: container port name "${p.name}" is not a valid IANA service name`);
        }
        if (names.has(p.name)) errors.push(`${where}: duplicate container port name "${p.name}"`);
        names.add(p.name);
        if (!(p.containerPort >= 1 && p.containerPort <= 65535)) errors.push(`${where}: containerPort ${p.containerPort} out of range`);
      }
    }
  }
  if (o.kind === "HorizontalPodAutoscaler") {
    const s = o.spec || {};
    if (s.minReplicas > s.maxReplicas) errors.push(`${where}: minReplicas above maxReplicas`);
  }
  if (o.kind === "PodDisruptionBudget") {
    const s = o.spec || {};
    if (s.minAvailable !== undefined && s.maxUnavailable !== undefined) {
      errors.push(`${where}: minAvailable and maxUnavailable are mutually exclusive`);
    }
  }
}

const matches = (selector, labels) =>
  Object.entries(selector || {}).every(([k, v]) => labels && labels[k] === v);

// How the objects refer to each other: a mistake here renders and validates
// per object, and fails only in a cluster.
function checkWiring(objs, errors) {
  const of = (kind) => objs.filter((o) => o.kind === kind);
  const deployments = of("Deployment");
  if (deployments.length !== 1) {
    errors.push(`expected exactly one Deployment, found ${deployments.length}`);
    return;
  }
  const d = deployments[0];
  const pod = d.spec.template;
  const podLabels = pod.metadata.labels || {};
  const podSpec = pod.spec;
  const c = podSpec.containers[0];
  const portNames = new Set((c.ports || []).map((p) => p.name));

  if (!matches(d.spec.selector.matchLabels, podLabels)) errors.push("Deployment: selector does not match the pod labels");
  for (const [probe, p] of [["livenessProbe", "/healthz"], ["readinessProbe", "/readyz"]]) {
    const g = c[probe] && c[probe].httpGet;
    if (!g) errors.push(`Deployment: ${probe} has no httpGet`);
    else if (g.path !== p || !portNames.has(g.port)) errors.push(`Deployment: ${probe} should GET ${p} on a named container port`);
  }
  const volumes = new Map((podSpec.volumes || []).map((v) => [v.name, v]));
  for (const m of c.volumeMounts || []) {
    if (!volumes.has(m.name)) errors.push(`Deployment: volumeMount ${m.name} has no volume`);
  }
  for (const m of c.volumeMounts || []) {
    const v = volumes.get(m.name);
    if (!v || !(v.secret || v.configMap)) continue;
    // The kubelet never updates a subPath mount: a rotated Secret or a
    // changed ConfigMap would stay stale in the pod.
    if (m.subPath || m.subPathExpr) errors.push(`Deployment: volumeMount ${m.name} uses subPath (never updated by the kubelet)`);
    if (v.secret && m.readOnly !== true) errors.push(`Deployment: Secret volume ${m.name} is not mounted readOnly`);
    if (v.secret && !v.secret.secretName) errors.push(`Deployment: Secret volume ${m.name} names no Secret`);
  }
  const configMaps = new Set(of("ConfigMap").map((o) => o.metadata.name));
  for (const v of volumes.values()) {
    if (v.configMap && !configMaps.has(v.configMap.name)) errors.push(`Deployment: volume ${v.name} names missing ConfigMap ${v.configMap.name}`);
  }
  const configMount = (c.volumeMounts || []).find((m) => m.mountPath === "/etc/sluice");
  if (!configMount || !volumes.get(configMount.name) || !volumes.get(configMount.name).configMap) {
    errors.push("Deployment: no ConfigMap mounted at /etc/sluice (the image reads /etc/sluice/sluice.yaml)");
  }
  const sums = (pod.metadata.annotations || {})["checksum/config"];
  if (!/^[0-9a-f]{64}$/.test(sums || "")) errors.push("Deployment: pod template lacks a sha256 checksum/config annotation");
  const sa = podSpec.serviceAccountName;
  const sas = of("ServiceAccount").map((o) => o.metadata.name);
  if (sas.length && !sas.includes(sa)) errors.push(`Deployment: serviceAccountName ${sa} is not the chart's ServiceAccount`);
  const sc = c.securityContext || {};
  const psc = podSpec.securityContext || {};
  if (!(sc.runAsNonRoot || psc.runAsNonRoot)) errors.push("Deployment: runAsNonRoot is not set");
  if (sc.readOnlyRootFilesystem !== true) errors.push("Deployment: readOnlyRootFilesystem is not true");
  if (sc.allowPrivilegeEscalation !== false) errors.push("Deployment: allowPrivilegeEscalation is not false");
  if (!(sc.capabilities && (sc.capabilities.drop || []).includes("ALL"))) errors.push("Deployment: capabilities do not drop ALL");
  const seccomp = (sc.seccompProfile || psc.seccompProfile || {}).type;
  if (seccomp !== "RuntimeDefault") errors.push("Deployment: seccompProfile is not RuntimeDefault");

  const services = of("Service");
  for (const s of services) {
    if (!matches(s.spec.selector, podLabels) || Object.keys(s.spec.selector || {}).length === 0) {
      errors.push(`Service ${s.metadata.name}: selector does not select the sluice pods`);
    }
    for (const p of s.spec.ports || []) {
      if (typeof p.targetPort === "string" && !portNames.has(p.targetPort)) {
        errors.push(`Service ${s.metadata.name}: targetPort ${p.targetPort} is not a container port name`);
      }
    }
  }
  for (const h of of("HorizontalPodAutoscaler")) {
    const t = h.spec.scaleTargetRef;
    if (t.kind !== "Deployment" || t.name !== d.metadata.name) errors.push("HorizontalPodAutoscaler: scaleTargetRef is not the Deployment");
    if (d.spec.replicas !== undefined) errors.push("Deployment: sets replicas while an HPA manages them");
  }
  for (const p of of("PodDisruptionBudget")) {
    if (!matches(p.spec.selector.matchLabels, podLabels)) errors.push("PodDisruptionBudget: selector does not select the sluice pods");
  }
  for (const m of of("ServiceMonitor")) {
    const targets = services.filter(
      (s) => matches(m.spec.selector.matchLabels, s.metadata.labels) &&
        (!m.spec.namespaceSelector || (m.spec.namespaceSelector.matchNames || []).includes(s.metadata.namespace)),
    );
    if (targets.length !== 1) {
      errors.push(`ServiceMonitor: selects ${targets.length} Services, expected the admin Service only`);
      continue;
    }
    const portNamesOfService = new Set((targets[0].spec.ports || []).map((p) => p.name));
    for (const e of m.spec.endpoints || []) {
      if (!portNamesOfService.has(e.port)) errors.push(`ServiceMonitor: endpoint port ${e.port} is not a port of ${targets[0].metadata.name}`);
      if (e.path !== "/metrics") errors.push("ServiceMonitor: endpoint path is not /metrics");
    }
    const adminPort = (c.ports || []).find((p) => p.name === "admin");
    const tp = (targets[0].spec.ports || []).find((p) => p.name === (m.spec.endpoints[0] || {}).port);
    if (!adminPort || !tp || tp.targetPort !== "admin") errors.push("ServiceMonitor: does not reach the admin container port");
  }
  for (const cm of of("ConfigMap")) {
    const labels = cm.metadata.labels || {};
    if (labels.grafana_dashboard === undefined) continue;
    for (const [k, v] of Object.entries(cm.data || {})) {
      let dash;
      try {
        dash = JSON.parse(v);
      } catch (e) {
        errors.push(`ConfigMap ${cm.metadata.name}: ${k} is not JSON: ${e.message}`);
        continue;
      }
      if (!Array.isArray(dash.panels) || dash.panels.length === 0 || !dash.uid || !dash.title) {
        errors.push(`ConfigMap ${cm.metadata.name}: ${k} is not a Grafana dashboard (uid, title, panels)`);
      }
    }
  }
}

function checkManifests(file) {
  const docs = readJSON(file);
  if (!Array.isArray(docs) || docs.length === 0) die(`${file}: expected a non-empty array of rendered objects`);
  const errors = [];
  const seen = new Set();
  const counts = {};
  for (const { source, object: o } of docs) {
    const where = `${source}: ${o.kind}/${(o.metadata || {}).name}`;
    const id = `${o.apiVersion}/${o.kind}/${(o.metadata || {}).namespace}/${(o.metadata || {}).name}`;
    if (seen.has(id)) errors.push(`${where}: duplicate object`);
    seen.add(id);
    const model = modelFor(o.apiVersion, o.kind);
    if (!model) {
      errors.push(`${where}: no model for ${o.apiVersion} ${o.kind}`);
      continue;
    }
    try {
      new model.Model(o).validate();
    } catch (e) {
      const details = (e.errors || []).map((x) => `${x.instancePath || "/"} ${x.message}`).join("; ");
      errors.push(`${where}: ${details || e.message}`);
    }
    checkFields(o, { k: "ref", name: `I${o.kind}`, from: declFile(model.decl) }, o.kind, errors);
    checkObjectRules(o, where, errors);
    counts[o.kind] = (counts[o.kind] || 0) + 1;
  }
  checkWiring(docs.map((d) => d.object), errors);
  if (errors.length) {
    for (const e of errors) process.stderr.write(`invalid: ${e}\n`);
    process.exit(1);
  }
  const summary = Object.entries(counts).map(([k, n]) => `${k}${n > 1 ? ` x${n}` : ""}`).join(", ");
  console.log(`manifests: ${docs.length} objects valid (${summary})`);
}

// --------------------------------------------------------- schema-covers

// Every key of README's configuration reference (between the
// config-reference markers) must be allowed under `config` in the values
// schema, or the schema would reject a file sluice accepts.
function checkSchemaCovers(schemaFile, readmeFile) {
  const schema = readJSON(schemaFile);
  const readme = fs.readFileSync(readmeFile, "utf8");
  const begin = readme.indexOf("<!-- config-reference:begin -->");
  const end = readme.indexOf("<!-- config-reference:end -->");
  if (begin < 0 || end < begin) die(`${readmeFile}: no config-reference markers`);
  const keys = [...readme.slice(begin, end).matchAll(/^\| `([^`]+)` \|/gm)].map((m) => m[1]);
  if (keys.length === 0) die(`${readmeFile}: no keys in the configuration reference`);
  const resolve = (node) => {
    for (;;) {
      if (node && node.$ref) node = schema.definitions[node.$ref.split("/").pop()];
      else if (node && node.allOf && node.allOf.length === 1) node = node.allOf[0];
      else return node || {};
    }
  };
  const missing = keys.filter((key) => {
    let node = schema.properties.config;
    for (let part of key.split(".")) {
      node = resolve(node);
      if (part.startsWith("<")) {
        node = node.additionalProperties;
        if (!node || typeof node !== "object") return true;
        continue;
      }
      const list = part.endsWith("[]");
      if (list) part = part.slice(0, -2);
      node = (node.properties || {})[part];
      if (!node) return true;
      if (list) node = resolve(node).items;
    }
    return false;
  });
  if (missing.length) die(`values.schema.json does not allow: ${missing.join(", ")}`);
  console.log(`schema: all ${keys.length} keys of the configuration reference are allowed`);
}

// ------------------------------------------------------------------ tls

// With tls.enabled: the Secret mounted whole-directory and read-only where
// sluice.yaml looks for it, the https container port, the Service's https
// port, probes still on the admin port.
function checkTls(file, secretName, port, clientCaSecret) {
  const objs = readJSON(file).map((d) => d.object);
  const errors = [];
  const d = objs.find((o) => o.kind === "Deployment");
  const podSpec = d.spec.template.spec;
  const c = podSpec.containers[0];
  const volumes = new Map((podSpec.volumes || []).map((v) => [v.name, v]));
  const mountOf = (secret, dir, keys) => {
    const hits = (c.volumeMounts || []).filter((m) => {
      const v = volumes.get(m.name);
      return v && v.secret && v.secret.secretName === secret;
    });
    if (hits.length !== 1) return errors.push(`Secret ${secret}: mounted ${hits.length} times, expected once`);
    const m = hits[0];
    if (m.mountPath !== dir) errors.push(`Secret ${secret}: mounted at ${m.mountPath}, expected ${dir}`);
    if (m.readOnly !== true) errors.push(`Secret ${secret}: mount is not readOnly`);
    if (m.subPath || m.subPathExpr) errors.push(`Secret ${secret}: mount uses subPath`);
    const items = (volumes.get(m.name).secret.items || []).map((i) => `${i.key}->${i.path}`).sort();
    if (JSON.stringify(items) !== JSON.stringify(keys.sort())) {
      errors.push(`Secret ${secret}: items ${items.join(", ")}, expected ${keys.join(", ")}`);
    }
  };
  mountOf(secretName, "/etc/sluice/tls", ["tls.crt->tls.crt", "tls.key->tls.key"]);
  if (clientCaSecret) {
    const [name, key] = clientCaSecret.split(":");
    mountOf(name, "/etc/sluice/client-ca", [`${key}->ca.crt`]);
  }
  const https = (c.ports || []).find((p) => p.name === "https");
  if (!https || https.containerPort !== Number(port)) errors.push(`container port https is ${https && https.containerPort}, expected ${port}`);
  for (const probe of ["livenessProbe", "readinessProbe"]) {
    if (((c[probe] || {}).httpGet || {}).port !== "admin") errors.push(`${probe} is not on the admin port`);
  }
  const svc = objs.find((o) => o.kind === "Service" && o.metadata.name === d.metadata.name);
  const sp = svc && (svc.spec.ports || []).find((p) => p.name === "https");
  if (!sp || sp.targetPort !== "https") errors.push(`Service ${d.metadata.name}: no https port targeting the container's https port`);
  const admin = objs.find((o) => o.kind === "Service" && o.metadata.name !== d.metadata.name);
  if (admin && (admin.spec.ports || []).some((p) => p.name === "https")) errors.push(`Service ${admin.metadata.name}: the admin Service has an https port`);
  if (errors.length) die(errors.join("\n"));
  console.log(`tls: Secret ${secretName} read-only at /etc/sluice/tls, container port https ${port}, Service port ${sp.port}`);
}

// ------------------------------------------------------------------ get

function getField(file, kind, name, pointer) {
  const hit = readJSON(file).find((d) => d.object.kind === kind && d.object.metadata.name === name);
  if (!hit) die(`${file}: no ${kind} named ${name}`);
  let v = hit.object;
  for (const raw of pointer.split("/").slice(1)) {
    const key = raw.replace(/~1/g, "/").replace(/~0/g, "~");
    if (v === null || typeof v !== "object" || !(key in v)) die(`${kind}/${name}: no ${pointer}`);
    v = v[key];
  }
  process.stdout.write(typeof v === "string" ? v : JSON.stringify(v) + "\n");
}

const [cmd, ...args] = process.argv.slice(2);
if (cmd === "values" && args.length === 2) checkValues(...args);
else if (cmd === "manifests" && args.length === 1) checkManifests(...args);
else if (cmd === "schema-covers" && args.length === 2) checkSchemaCovers(...args);
else if (cmd === "tls" && (args.length === 3 || args.length === 4)) checkTls(...args);
else if (cmd === "get" && args.length === 4) getField(...args);
else {
  die(
    "usage: validate.js values SCHEMA VALUES | manifests RENDERED.json | " +
      "schema-covers SCHEMA README | tls RENDERED.json SECRET PORT [CA_SECRET:KEY] | " +
      "get RENDERED.json KIND NAME POINTER",
  );
}
