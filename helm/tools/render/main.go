// Command render renders the sluice Helm chart without helm, for CI.
//
// No helm binary is packaged for Debian 12, so scripts/chart-check.sh builds
// this instead (GOPATH mode, Debian's sprig and sigs.k8s.io/yaml). It
// implements the subset of helm's template engine the chart uses, with the
// same semantics where they matter:
//
//   - .Values: the chart's values.yaml deep-merged with each -f file in
//     order (maps merge, anything else replaces, null deletes the key);
//     numbers are float64 as in helm.
//   - .Release (Name, Namespace, Service, Revision, IsInstall, IsUpgrade),
//     .Chart (from Chart.yaml), .Capabilities (APIVersions.Has, KubeVersion),
//     .Template (Name, BasePath), .Files.Get.
//   - Functions: sprig's text functions (minus env, expandenv and
//     getHostByName), plus include, tpl, required, fail, toYaml, fromYaml,
//     toJson, fromJson.
//   - Every file under templates/ is parsed into one template set; files
//     starting with "_" only define templates; NOTES.txt is rendered (so its
//     errors fail the run) but printed only with --notes.
//   - missingkey=zero, and "<no value>" is blanked, as helm does.
//
// Output is a multi-document YAML stream, one "# Source:" comment per file,
// like `helm template`, or with -o json an array of {source, object} for
// offline validation. Each document must parse as YAML (no duplicate keys)
// and carry apiVersion, kind and metadata.name, or the run fails.
//
// Usage:
//
//	render [-f values.yaml]... [--name NAME] [--namespace NS]
//	       [--api-versions LIST] [--notes] [--print-values] [-o yaml|json] CHART_DIR
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"sigs.k8s.io/yaml"
)

// defaultAPIVersions is what .Capabilities.APIVersions.Has answers true for
// unless --api-versions replaces it: the built-in groups the chart uses and
// the prometheus-operator CRDs, as on a cluster running kube-prometheus.
var defaultAPIVersions = []string{
	"v1",
	"apps/v1",
	"autoscaling/v2",
	"policy/v1",
	"monitoring.coreos.com/v1",
	"monitoring.coreos.com/v1/ServiceMonitor",
}

type valueFiles []string

func (v *valueFiles) String() string     { return strings.Join(*v, ",") }
func (v *valueFiles) Set(s string) error { *v = append(*v, s); return nil }

// APIVersions answers .Capabilities.APIVersions.Has.
type APIVersions []string

// Has reports whether the group/version (or group/version/Kind) is served.
func (a APIVersions) Has(v string) bool {
	for _, x := range a {
		if x == v {
			return true
		}
	}
	return false
}

// KubeVersion mirrors helm's .Capabilities.KubeVersion.
type KubeVersion struct {
	Version    string
	Major      string
	Minor      string
	GitVersion string
}

// Capabilities mirrors helm's .Capabilities.
type Capabilities struct {
	APIVersions APIVersions
	KubeVersion KubeVersion
}

// Files gives templates read access to the chart's non-template files.
type Files struct {
	root string
}

// Get returns a file's content relative to the chart root, or "" when the
// file is missing or lies under templates/ (as helm does).
func (f Files) Get(name string) string {
	clean := path.Clean("/" + name)[1:]
	if clean == "" || strings.HasPrefix(clean, "templates/") {
		return ""
	}
	b, err := os.ReadFile(filepath.Join(f.root, filepath.FromSlash(clean)))
	if err != nil {
		return ""
	}
	return string(b)
}

func main() {
	var files valueFiles
	flag.Var(&files, "f", "values file merged over values.yaml (repeatable, later wins)")
	flag.Var(&files, "values", "same as -f")
	name := flag.String("name", "sluice", "release name")
	namespace := flag.String("namespace", "default", "release namespace")
	apiVersions := flag.String("api-versions", strings.Join(defaultAPIVersions, ","),
		"comma-separated API versions .Capabilities.APIVersions.Has reports")
	notes := flag.Bool("notes", false, "print the rendered NOTES.txt to stderr")
	output := flag.String("o", "yaml", "yaml: a multi-document stream like `helm template`; "+
		"json: an array of {source, object}")
	printValues := flag.Bool("print-values", false, "print the merged values as JSON and exit")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: render [-f values.yaml]... [--name NAME] [--namespace NS] "+
			"[--api-versions LIST] [--notes] [--print-values] [-o yaml|json] CHART_DIR\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	if *output != "yaml" && *output != "json" {
		fmt.Fprintf(os.Stderr, "render: -o must be yaml or json\n")
		os.Exit(2)
	}
	if err := run(flag.Arg(0), files, *name, *namespace, splitList(*apiVersions), *notes, *printValues,
		*output == "json"); err != nil {
		fmt.Fprintf(os.Stderr, "render: %v\n", err)
		os.Exit(1)
	}
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func run(chartDir string, valueFiles []string, release, namespace string, apis []string,
	printNotes, printValues, asJSON bool) error {
	chart, err := readYAMLMap(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		return err
	}
	chartName, _ := chart["name"].(string)
	if chartName == "" {
		return errors.New("Chart.yaml: name is required")
	}
	if v, _ := chart["apiVersion"].(string); v != "v2" {
		return fmt.Errorf("Chart.yaml: apiVersion must be v2, got %q", v)
	}

	values, err := readYAMLMap(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		return err
	}
	for _, f := range valueFiles {
		override, err := readYAMLMap(f)
		if err != nil {
			return err
		}
		values = mergeValues(values, override)
	}
	if printValues {
		b, err := json.MarshalIndent(values, "", "  ")
		if err != nil {
			return err
		}
		fmt.Println(string(b))
		return nil
	}

	templates, err := readTemplates(filepath.Join(chartDir, "templates"), chartName)
	if err != nil {
		return err
	}
	top := map[string]interface{}{
		"Values": values,
		"Release": map[string]interface{}{
			"Name":      release,
			"Namespace": namespace,
			"Service":   "Helm",
			"Revision":  1,
			"IsInstall": true,
			"IsUpgrade": false,
		},
		"Chart":        chartMetadata(chart),
		"Capabilities": Capabilities{APIVersions: apis, KubeVersion: KubeVersion{"v1.29.0", "1", "29", "v1.29.0"}},
		"Files":        Files{root: chartDir},
	}
	rendered, err := render(templates, top)
	if err != nil {
		return err
	}

	names := make([]string, 0, len(rendered))
	for n := range rendered {
		names = append(names, n)
	}
	sort.Strings(names)
	var out bytes.Buffer
	type object struct {
		Source string                 `json:"source"`
		Object map[string]interface{} `json:"object"`
	}
	var objects []object
	for _, n := range names {
		if path.Base(n) == "NOTES.txt" {
			if printNotes {
				fmt.Fprint(os.Stderr, rendered[n])
			}
			continue
		}
		for i, doc := range splitDocuments(rendered[n]) {
			obj, err := parseManifest(doc)
			if err != nil {
				return fmt.Errorf("%s (document %d): %v\n%s", n, i+1, err, doc)
			}
			objects = append(objects, object{n, obj})
			fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", n, strings.TrimRight(doc, "\n"))
		}
	}
	if asJSON {
		b, err := json.MarshalIndent(objects, "", "  ")
		if err != nil {
			return err
		}
		out.Reset()
		out.Write(b)
		out.WriteByte('\n')
	}
	_, err = os.Stdout.Write(out.Bytes())
	return err
}

func chartMetadata(chart map[string]interface{}) map[string]interface{} {
	// Helm exposes Chart.yaml keys with upper-case first letters.
	meta := map[string]interface{}{}
	for k, v := range chart {
		if k == "" {
			continue
		}
		meta[strings.ToUpper(k[:1])+k[1:]] = v
	}
	for _, k := range []string{"Name", "Version", "AppVersion", "Description", "Type"} {
		if _, ok := meta[k]; !ok {
			meta[k] = ""
		}
	}
	return meta
}

func readYAMLMap(file string) (map[string]interface{}, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	m := map[string]interface{}{}
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	if m == nil {
		m = map[string]interface{}{}
	}
	return m, nil
}

// mergeValues returns base with override merged in: maps merge key by key,
// any other value replaces, and a null in override removes the key.
func mergeValues(base, override map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{}, len(base))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range override {
		if v == nil {
			delete(out, k)
			continue
		}
		if om, ok := v.(map[string]interface{}); ok {
			if bm, ok := out[k].(map[string]interface{}); ok {
				out[k] = mergeValues(bm, om)
				continue
			}
		}
		out[k] = v
	}
	return out
}

type templateFile struct {
	name string // "<chart>/templates/<rel>"
	text string
}

func readTemplates(dir, chartName string) ([]templateFile, error) {
	var files []templateFile
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files = append(files, templateFile{
			name: path.Join(chartName, "templates", filepath.ToSlash(rel)),
			text: string(b),
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: no templates", dir)
	}
	return files, nil
}

const maxIncludeDepth = 1000

// render parses every template into one set and executes each renderable
// file, returning file name -> output.
func render(files []templateFile, top map[string]interface{}) (map[string]string, error) {
	root := template.New("gotpl").Option("missingkey=zero")
	depth := 0
	funcs := sprig.TxtFuncMap()
	for _, f := range []string{"env", "expandenv", "getHostByName"} {
		delete(funcs, f)
	}
	funcs["toYaml"] = toYAML
	funcs["fromYaml"] = fromYAML
	funcs["toJson"] = toJSON
	funcs["fromJson"] = fromJSON
	funcs["required"] = required
	funcs["fail"] = func(msg string) (string, error) { return "", errors.New(msg) }
	funcs["include"] = func(name string, data interface{}) (string, error) {
		if depth >= maxIncludeDepth {
			return "", fmt.Errorf("include %q: rendering depth exceeded %d", name, maxIncludeDepth)
		}
		depth++
		defer func() { depth-- }()
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, name, data); err != nil {
			return "", err
		}
		return buf.String(), nil
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := root.Clone()
		if err != nil {
			return "", err
		}
		name := "tpl"
		if m, ok := data.(map[string]interface{}); ok {
			if tm, ok := m["Template"].(map[string]interface{}); ok {
				if n, ok := tm["Name"].(string); ok {
					name = n + ":tpl"
				}
			}
		}
		t, err = t.New(name).Parse(text)
		if err != nil {
			return "", fmt.Errorf("tpl: %v", err)
		}
		var buf bytes.Buffer
		if err := t.Execute(&buf, data); err != nil {
			return "", fmt.Errorf("tpl: %v", err)
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	root.Funcs(funcs)

	for _, f := range files {
		if _, err := root.New(f.name).Parse(f.text); err != nil {
			return nil, err
		}
	}

	out := map[string]string{}
	for _, f := range files {
		if strings.HasPrefix(path.Base(f.name), "_") {
			continue
		}
		data := map[string]interface{}{}
		for k, v := range top {
			data[k] = v
		}
		data["Template"] = map[string]interface{}{
			"Name":     f.name,
			"BasePath": path.Dir(f.name),
		}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, f.name, data); err != nil {
			return nil, err
		}
		out[f.name] = strings.ReplaceAll(buf.String(), "<no value>", "")
	}
	return out, nil
}

// toYAML matches helm: YAML without the trailing newline, "" on error.
func toYAML(v interface{}) string {
	b, err := yaml.Marshal(v)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(b), "\n")
}

// fromYAML matches helm: a map, with an "Error" key when parsing fails.
func fromYAML(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := yaml.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func toJSON(v interface{}) string {
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}

func fromJSON(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

// required fails rendering with msg when v is nil or an empty string.
func required(msg string, v interface{}) (interface{}, error) {
	if v == nil {
		return v, errors.New(msg)
	}
	if s, ok := v.(string); ok && s == "" {
		return v, errors.New(msg)
	}
	return v, nil
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*(#.*)?$`)

// splitDocuments splits a rendered file into its non-empty YAML documents
// (a document holding only comments counts as empty).
func splitDocuments(s string) []string {
	var docs []string
	for _, d := range docSeparator.Split(s, -1) {
		if hasContent(d) {
			docs = append(docs, strings.Trim(d, "\n"))
		}
	}
	return docs
}

func hasContent(doc string) bool {
	for _, line := range strings.Split(doc, "\n") {
		t := strings.TrimSpace(line)
		if t != "" && !strings.HasPrefix(t, "#") {
			return true
		}
	}
	return false
}

// parseManifest parses one rendered document the way helm and kubectl do
// (YAML 1.1 via sigs.k8s.io/yaml; duplicate keys are errors) and requires
// apiVersion, kind and metadata.name.
func parseManifest(doc string) (map[string]interface{}, error) {
	var obj map[string]interface{}
	if err := yaml.UnmarshalStrict([]byte(doc), &obj); err != nil {
		return nil, fmt.Errorf("not valid YAML: %v", err)
	}
	for _, k := range []string{"apiVersion", "kind"} {
		if s, _ := obj[k].(string); s == "" {
			return nil, fmt.Errorf("missing %s", k)
		}
	}
	meta, _ := obj["metadata"].(map[string]interface{})
	if s, _ := meta["name"].(string); s == "" {
		return nil, errors.New("missing metadata.name")
	}
	return obj, nil
}
