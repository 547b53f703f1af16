package manifest

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/yaml"
)

// document is one YAML document of a file.
type document struct {
	// line is the file's line number (from 1) of the document's first line.
	line int
	data []byte
	// separatorErr is set when the "---" line that opened the document has
	// text after it, which kubectl refuses too.
	separatorErr string
}

// splitDocuments splits a YAML stream at "---" lines as kubectl's reader
// does (k8s.io/apimachinery/pkg/util/yaml.YAMLReader): a line starting
// with "---" followed by nothing but spaces or a comment. Unlike that reader
// it keeps going after a bad separator, and it remembers where each document
// starts, so errors name the line in the file.
func splitDocuments(data []byte) []document {
	docs := []document{{line: 1}}
	lineNo := 0
	for len(data) > 0 {
		lineNo++
		end := bytes.IndexByte(data, '\n') + 1
		if end == 0 {
			end = len(data)
		}
		line := data[:end]
		data = data[end:]
		if bytes.HasPrefix(line, []byte("---")) {
			rest := strings.TrimSpace(string(line[3:]))
			doc := document{line: lineNo + 1}
			if rest != "" && !strings.HasPrefix(rest, "#") {
				doc = document{line: lineNo, separatorErr: fmt.Sprintf("invalid YAML document separator %q: nothing but a comment may follow ---", strings.TrimSpace(string(line)))}
			}
			docs = append(docs, doc)
			continue
		}
		last := &docs[len(docs)-1]
		last.data = append(last.data, line...)
	}
	return docs
}

// lineErr is a YAML error at a line of the file.
type lineErr struct {
	line   int
	reason string
}

// yamlLine finds "line N: reason" in the YAML library's messages.
var yamlLine = regexp.MustCompile(`line (\d+): (.*)`)

// decode turns a document into an object the way kubectl does before it
// sends one (sigs.k8s.io/yaml, then JSON numbers as int64 or float64), except
// that a key given twice in one mapping is an error rather than silently
// the last value. It returns nil and no errors for an empty document.
func (d document) decode() (*unstructured.Unstructured, []lineErr) {
	if d.separatorErr != "" {
		return nil, []lineErr{{d.line, d.separatorErr}}
	}
	// Pad with the lines before the document so the YAML library's line
	// numbers are the file's.
	padded := append(bytes.Repeat([]byte("\n"), d.line-1), d.data...)
	js, err := yaml.YAMLToJSONStrict(padded)
	if err != nil {
		return nil, yamlErrors(d.line, err)
	}
	var v interface{}
	if err := utiljson.Unmarshal(js, &v); err != nil {
		return nil, []lineErr{{d.line, err.Error()}}
	}
	switch v := v.(type) {
	case nil:
		return nil, nil
	case map[string]interface{}:
		return &unstructured.Unstructured{Object: v}, nil
	case []interface{}:
		return nil, []lineErr{{d.line, "a manifest must be a mapping with apiVersion, kind, metadata and spec, not a list; separate objects with ---"}}
	default:
		return nil, []lineErr{{d.line, fmt.Sprintf("a manifest must be a mapping with apiVersion, kind, metadata and spec, not the scalar %v", v)}}
	}
}

// yamlErrors splits a YAML library error into one error per line it
// mentions; an error that names no line is put at the document's start.
func yamlErrors(docLine int, err error) []lineErr {
	msg := strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")
	var out []lineErr
	for _, m := range yamlLine.FindAllStringSubmatch(msg, -1) {
		var n int
		fmt.Sscan(m[1], &n)
		out = append(out, lineErr{n, strings.TrimSpace(m[2])})
	}
	if len(out) == 0 {
		out = append(out, lineErr{docLine, strings.TrimPrefix(msg, "yaml: ")})
	}
	return out
}
