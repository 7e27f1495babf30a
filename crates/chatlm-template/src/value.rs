//! Request JSON → template values, built for the per-render cost.
//!
//! Every render converts its whole conversation into minijinja values, so the conversion is on the
//! hot path. minijinja's own map (an `IndexMap` hashed with SipHash) costs a hash per key to build
//! and per lookup; chat messages and tool schemas are small objects (`role`, `content`, ...), for
//! which a vector scanned in order is several times cheaper. [`SmallMap`] is that vector, and it
//! behaves exactly like the built-in map everywhere a template can look: it is a `Map`, keeps
//! insertion order, iterates (and reverses) by keys, prints and compares the same way. Larger
//! objects still become the built-in map so lookups stay O(1).

use std::fmt;
use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectExt, ObjectRepr, Value, ValueKind};
use serde_json::Value as Json;

/// Objects with more keys than this become minijinja's hashed map: a scan is faster only while short.
const SMALL: usize = 16;

/// A string-keyed map in insertion order, looked up by scanning. Keys are unique.
pub(crate) struct SmallMap(Vec<(Value, Value)>);

impl SmallMap {
    pub(crate) fn with_capacity(n: usize) -> SmallMap {
        SmallMap(Vec::with_capacity(n))
    }

    /// Adds `key`, or replaces its value in place (the built-in map's `insert` semantics).
    pub(crate) fn insert(&mut self, key: &str, value: Value) {
        match self.0.iter_mut().find(|(k, _)| k.as_str() == Some(key)) {
            Some(slot) => slot.1 = value,
            None => self.0.push((Value::from(key), value)),
        }
    }

    /// Adds a key known not to be present yet.
    fn push_unique(&mut self, key: &str, value: Value) {
        self.0.push((Value::from(key), value));
    }

    fn find(&self, key: &str) -> Option<Value> {
        self.0.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v.clone())
    }

    /// The finished value: this map, or the built-in map once it is too large to scan.
    pub(crate) fn into_value(self) -> Value {
        if self.0.len() > SMALL {
            Value::from_pairs(self.0)
        } else {
            Value::from_object(self)
        }
    }
}

impl fmt::Debug for SmallMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.iter().map(|(k, v)| (k, v))).finish()
    }
}

impl Object for SmallMap {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        // Only a string equals a string key (as in the hashed map: `1` does not find `"1"`).
        if key.kind() != ValueKind::String {
            return None;
        }
        self.find(key.as_str()?)
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<Value> {
        self.find(key)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        self.mapped_rev_key_value_enumerator(|this| Box::new(this.0.iter().map(|(k, v)| (k.clone(), v.clone()))))
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.0.len())
    }
}

/// Converts JSON to a template value, keeping key order.
pub(crate) fn json_to_value(v: &Json) -> Value {
    match v {
        Json::Null => Value::from(()),
        Json::Bool(b) => Value::from(*b),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(a) => Value::from(a.iter().map(json_to_value).collect::<Vec<_>>()),
        Json::Object(o) => {
            let mut m = SmallMap::with_capacity(o.len());
            for (k, v) in o {
                m.push_unique(k, json_to_value(v));
            }
            m.into_value()
        }
    }
}

/// A message as a template value, without its `null` keys (transformers 5 drops them).
pub(crate) fn message_to_value(m: &Json) -> Value {
    match m {
        Json::Object(o) => {
            let mut map = SmallMap::with_capacity(o.len());
            for (k, v) in o.iter().filter(|(_, v)| !v.is_null()) {
                map.push_unique(k, json_to_value(v));
            }
            map.into_value()
        }
        other => json_to_value(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The small map must be indistinguishable from minijinja's own map in what templates see.
    #[test]
    fn small_map_behaves_like_the_builtin_map() {
        let data = json!({"role": "user", "content": "hi", "n": 1, "tool_calls": [{"a": 1}]});
        let small = json_to_value(&data);
        let builtin = Value::from(minijinja::value::Serde(&data));
        assert!(small.downcast_object_ref::<SmallMap>().is_some());
        // The crate's own environment: its formatter and filters (tojson, string) walk maps too.
        let env = crate::env::environment(&crate::Limits::default());
        for src in [
            "{{ m }}|{{ m|length }}|{{ m|list }}|{{ m.role }}{{ m['content'] }}{{ m[1] }}{{ m.missing is defined }}",
            "{% for k, v in m.items() %}{{ k }}={{ v }};{% endfor %}{{ m|dictsort }}{{ m|reverse|list }}",
            "{{ m == other }}{{ m|tojson }}{{ 'role' in m }}{{ m is mapping }}{{ m.get('n') }}{{ m.keys()|list }}",
            "{{ [m, other]|unique|list|length }}{{ m ~ '' }}{% if m %}t{% endif %}{{ m.values()|list }}",
        ] {
            let t = env.template_from_str(src).unwrap();
            let a = t.render(minijinja::context! { m => small.clone(), other => builtin.clone() });
            let b = t.render(minijinja::context! { m => builtin.clone(), other => builtin.clone() });
            assert_eq!(a.as_ref().map_err(|e| e.to_string()), b.as_ref().map_err(|e| e.to_string()), "{src}");
            assert!(a.is_ok(), "{src}: {a:?}");
        }
        assert_eq!(format!("{small:?}"), format!("{builtin:?}"));
    }

    #[test]
    fn large_objects_use_the_hashed_map() {
        let big: serde_json::Map<String, Json> = (0..40).map(|i| (format!("k{i}"), json!(i))).collect();
        let v = json_to_value(&Json::Object(big));
        assert!(v.downcast_object_ref::<SmallMap>().is_none());
        assert_eq!(v.get_attr("k39").unwrap(), Value::from(39));
    }

    #[test]
    fn insert_replaces_in_place() {
        let mut m = SmallMap::with_capacity(2);
        m.insert("a", Value::from(1));
        m.insert("b", Value::from(2));
        m.insert("a", Value::from(3));
        let v = m.into_value();
        assert_eq!(v.to_string(), "{'a': 3, 'b': 2}");
    }
}
