package manifest

import (
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Error is a validation failure of one document. Field is the path of the
// field at fault as the apiserver names it ("spec.resources.cpu"), or "line
// N" for a YAML syntax error, or empty for a failure of the whole document.
type Error struct {
	File   string
	Index  int
	Field  string
	Reason string
}

// Error renders "FILE:FIELD: REASON", the shape compilers use, so editors
// and terminals can jump to the file.
func (e *Error) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s: %s", e.File, e.Reason)
	}
	return fmt.Sprintf("%s:%s: %s", e.File, e.Field, e.Reason)
}

// Join returns one error whose message lists errs one per line, or nil when
// there are none; for commands that print every failure at once.
func Join(errs []*Error) error {
	all := make([]error, len(errs))
	for i, e := range errs {
		all[i] = e
	}
	return errors.Join(all...)
}

// fromFieldErrors converts the apiserver's field errors of one document,
// keeping their field paths and wording ("Invalid value: ...: must be ...").
func fromFieldErrors(file string, index int, list field.ErrorList) []*Error {
	out := make([]*Error, 0, len(list))
	for _, fe := range list {
		path := fe.Field
		if path == "<nil>" { // field.Path's rendering of "the whole object"
			path = ""
		}
		reason := fe.ErrorBody()
		if path == "" && fe.Type == field.ErrorTypeInvalid && fe.BadValue == nil {
			// The apiserver's "rules were not checked" note has no value
			// to show; ErrorBody would render it as "Invalid value: null".
			reason = fe.Detail
		}
		out = append(out, &Error{File: file, Index: index, Field: path, Reason: reason})
	}
	return out
}
