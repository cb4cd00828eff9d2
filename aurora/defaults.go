package aurora

import (
	"encoding/json"
	"fmt"
	"reflect"
)

// Defaults returns a deep copy of j in which every absent attribute that has
// a default in Aurora's schema holds that default, at every level present
// (an absent struct without a default, such as announce or logger, stays
// absent: adding it would change the job's meaning). Defaults that Aurora
// writes as templates stay templates: name is "{{task.name}}", the task's
// name "{{processes[0].name}}", announce.portmap {"aurora": "{{primary_port}}"}.
func (j Job) Defaults() Job {
	c := j.clone()
	applyDefaults(reflect.ValueOf(&c).Elem())
	return c
}

// clone deep-copies a job through its JSON form, which keeps absent apart
// from empty.
func (j Job) clone() Job {
	data, err := json.Marshal(j)
	if err != nil {
		panic(fmt.Sprintf("aurora: encoding a job: %v", err))
	}
	var c Job
	if err := json.Unmarshal(data, &c); err != nil {
		panic(fmt.Sprintf("aurora: decoding a job: %v", err))
	}
	return c
}

// applyDefaults fills absent attributes of the struct rv (settable) and of
// every struct below it.
func applyDefaults(rv reflect.Value) {
	for _, f := range fieldsOf(rv.Type()) {
		fv := rv.Field(f.index)
		if fv.IsNil() && f.def != "" {
			fv.Set(defaultValue(fv.Type(), f.def))
			continue // defaultValue already filled what is below
		}
		descend(fv)
	}
}

func descend(fv reflect.Value) {
	switch fv.Kind() {
	case reflect.Pointer:
		if !fv.IsNil() && fv.Elem().Kind() == reflect.Struct {
			applyDefaults(fv.Elem())
		}
	case reflect.Slice:
		if fv.Type().Elem().Kind() == reflect.Struct {
			for i := 0; i < fv.Len(); i++ {
				applyDefaults(fv.Index(i))
			}
		}
	}
}

// defaultValue decodes a default tag into a new value of type t, with the
// defaults below it applied.
func defaultValue(t reflect.Type, def string) reflect.Value {
	p := reflect.New(t)
	if err := json.Unmarshal([]byte(def), p.Interface()); err != nil {
		panic(fmt.Sprintf("aurora: bad default %s for %s: %v", def, t, err))
	}
	descend(p.Elem())
	return p.Elem()
}
