package aurora

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
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

// clone deep-copies a job; absent stays apart from empty.
func (j Job) clone() Job {
	return deepCopy(reflect.ValueOf(j)).Interface().(Job)
}

// deepCopy returns a copy of v (a schema value) sharing nothing mutable
// with it: nil pointers, slices and maps stay nil, empty ones stay empty.
func deepCopy(v reflect.Value) reflect.Value {
	c := reflect.New(v.Type()).Elem()
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			c.Set(deepCopy(v.Elem()).Addr())
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			c.Field(i).Set(deepCopy(v.Field(i)))
		}
	case reflect.Slice:
		if !v.IsNil() {
			s := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
			for i := 0; i < v.Len(); i++ {
				s.Index(i).Set(deepCopy(v.Index(i)))
			}
			c.Set(s)
		}
	case reflect.Map:
		if !v.IsNil() {
			m := reflect.MakeMapWithSize(v.Type(), v.Len())
			for it := v.MapRange(); it.Next(); {
				m.SetMapIndex(it.Key(), deepCopy(it.Value()))
			}
			c.Set(m)
		}
	default:
		c.Set(v)
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
	return deepCopy(defaultProto(t, def))
}

// defaultProto is defaultValue shared, for readers only: each tag is
// decoded once (a job has a few per process, and jobs have thousands of
// processes).
func defaultProto(t reflect.Type, def string) reflect.Value {
	key := defaultKey{t, def}
	proto, ok := defaultCache.Load(key)
	if !ok {
		p := reflect.New(t)
		if err := json.Unmarshal([]byte(def), p.Interface()); err != nil {
			panic(fmt.Sprintf("aurora: bad default %s for %s: %v", def, t, err))
		}
		descend(p.Elem())
		proto, _ = defaultCache.LoadOrStore(key, p.Elem())
	}
	return proto.(reflect.Value)
}

type defaultKey struct {
	t   reflect.Type
	def string
}

var defaultCache sync.Map // defaultKey → reflect.Value, never changed
