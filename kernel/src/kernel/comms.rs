//! Comms (Jupyter's custom messages between frontend and kernel, used by widgets): a registry of
//! comm targets by name and of the comms open on them. Nothing registers a target yet, so a
//! frontend's `comm_open` is answered with `comm_close` (as the spec asks for an unknown
//! target); a feature that needs comms (e.g. widgets from the prelude) registers a
//! [`CommTarget`] here and gets the opens, messages and closes for its name.

use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};

/// The kernel side of one comm target.
pub trait CommTarget: Send {
    /// A frontend opened a comm; an error refuses it (the kernel then closes it).
    fn open(&mut self, comm_id: &str, data: &Value) -> Result<(), String>;
    /// A message on an open comm; the returned values go back as `comm_msg` data.
    fn message(&mut self, comm_id: &str, data: &Value) -> Vec<Value>;
    fn close(&mut self, comm_id: &str);
}

#[derive(Default)]
pub struct CommRegistry {
    targets: HashMap<String, Box<dyn CommTarget>>,
    /// comm_id → target name
    open: BTreeMap<String, String>,
}

/// What the kernel must send after a frontend's comm message.
#[derive(Debug, PartialEq)]
pub enum CommAnswer {
    /// Nothing to send.
    None,
    /// `comm_close` for this comm (unknown target, or the target refused it).
    Close,
    /// `comm_msg`s with these data.
    Messages(Vec<Value>),
}

impl CommRegistry {
    pub fn register(&mut self, target_name: &str, target: Box<dyn CommTarget>) {
        self.targets.insert(target_name.to_owned(), target);
    }

    pub fn open(&mut self, comm_id: &str, target_name: &str, data: &Value) -> CommAnswer {
        let Some(target) = self.targets.get_mut(target_name) else {
            return CommAnswer::Close;
        };
        match target.open(comm_id, data) {
            Ok(()) => {
                self.open.insert(comm_id.to_owned(), target_name.to_owned());
                CommAnswer::None
            }
            Err(why) => {
                eprintln!("torchbook: comm target {target_name:?} refused comm {comm_id}: {why}");
                CommAnswer::Close
            }
        }
    }

    pub fn message(&mut self, comm_id: &str, data: &Value) -> CommAnswer {
        let target = self.open.get(comm_id).and_then(|name| self.targets.get_mut(name));
        match target {
            Some(target) => CommAnswer::Messages(target.message(comm_id, data)),
            None => CommAnswer::None,
        }
    }

    pub fn close(&mut self, comm_id: &str) {
        if let Some(name) = self.open.remove(comm_id) {
            if let Some(target) = self.targets.get_mut(&name) {
                target.close(comm_id);
            }
        }
    }

    /// The open comms for `comm_info_reply`, optionally only those of one target.
    pub fn info(&self, target_name: Option<&str>) -> Map<String, Value> {
        self.open
            .iter()
            .filter(|(_, name)| target_name.is_none_or(|wanted| wanted == name.as_str()))
            .map(|(id, name)| (id.clone(), json!({"target_name": name})))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Echoes every message back, and refuses opens whose data say so.
    struct Echo(Vec<String>);

    impl CommTarget for Echo {
        fn open(&mut self, comm_id: &str, data: &Value) -> Result<(), String> {
            if data["refuse"] == true {
                return Err("asked to".into());
            }
            self.0.push(format!("open {comm_id}"));
            Ok(())
        }
        fn message(&mut self, _: &str, data: &Value) -> Vec<Value> {
            vec![data.clone()]
        }
        fn close(&mut self, comm_id: &str) {
            self.0.push(format!("close {comm_id}"));
        }
    }

    #[test]
    fn unknown_targets_are_closed_and_known_ones_routed() {
        let mut comms = CommRegistry::default();
        assert_eq!(comms.open("c1", "jupyter.widget", &json!({})), CommAnswer::Close);
        comms.register("echo", Box::new(Echo(Vec::new())));
        assert_eq!(comms.open("c2", "echo", &json!({})), CommAnswer::None);
        assert_eq!(comms.open("c3", "echo", &json!({"refuse": true})), CommAnswer::Close);
        assert_eq!(comms.message("c2", &json!({"x": 1})), CommAnswer::Messages(vec![json!({"x": 1})]));
        assert_eq!(comms.message("nope", &json!({})), CommAnswer::None);
        assert_eq!(comms.info(None).keys().collect::<Vec<_>>(), ["c2"]);
        assert_eq!(comms.info(Some("echo"))["c2"]["target_name"], "echo");
        assert!(comms.info(Some("other")).is_empty());
        comms.close("c2");
        assert!(comms.info(None).is_empty());
    }
}
