//! The store that keeps a session's variables between cells, compiled once here instead of in
//! every cell.
//!
//! evcxr passes a session's variables from one cell library to the next in a
//! `HashMap<String, Box<dyn Any>>` behind a raw pointer, and writes the module that defines it
//! (`evcxr_internal_runtime`: `VariableStore` with `put_variable`, `check_variable`,
//! `take_variable`, `lazy_arc`, and `create_variable_store`) into the source of every cell that
//! has variables. rustc then compiles that map's insert, lookup, removal, hashing and drop code
//! at opt-level 0 in every such cell: ≈ 50 ms of a trivial cell's build on the project's
//! machine (docs/PERFORMANCE.md). The kernel's build of a cell that links this crate replaces
//! that module with `pub use ::torchbook::cell_store::*;` (`engine::variable_store` in the
//! kernel), so a cell instantiates only what depends on its own types: boxing a value, and
//! comparing a `TypeId`.
//!
//! The interface is evcxr's, names and messages included: evcxr's host reads
//! [`VARIABLE_CHANGED_TYPE`] and [`USER_ERROR_OCCURRED`] from a cell's standard output.
//!
//! ```
//! use torchbook::cell_store::*;
//!
//! let store = unsafe { &mut *create_variable_store() };
//! store.put_variable::<Vec<i32>>("v", vec![1, 2]);
//! assert!(store.check_variable::<Vec<i32>>("v"));
//! assert!(!store.check_variable::<String>("v"), "a variable of another type is reported");
//! assert_eq!(store.take_variable::<Vec<i32>>("v"), [1, 2]);
//! // What an async cell keeps: created once, then shared.
//! let first = store.lazy_arc("runtime", || String::from("made once"));
//! let again = store.lazy_arc("runtime", || String::from("not made"));
//! assert!(std::sync::Arc::ptr_eq(&first, &again));
//! ```

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

/// Printed (then the variable's name) when a variable's type no longer matches the cell's.
pub const VARIABLE_CHANGED_TYPE: &str = "EVCXR_VARIABLE_CHANGED_TYPE:";
/// Printed when a cell's `?` caught an error.
pub const USER_ERROR_OCCURRED: &str = "EVCXR_ERROR_OCCURRED";

/// A session's variables by name. Its layout is that of evcxr's own store (one map of the same
/// type), so a store created by a cell built from evcxr's module is read correctly here.
///
/// The typed methods are thin and generic; each calls one `#[inline(never)]` method that holds
/// the map code. `inline(never)` also keeps rustc from marking a small one cross-crate
/// inlinable, which would copy it into every cell again.
pub struct VariableStore {
    variables: HashMap<String, Box<dyn Any + 'static>>,
}

impl Default for VariableStore {
    fn default() -> Self {
        Self::new()
    }
}

impl VariableStore {
    pub fn new() -> VariableStore {
        VariableStore { variables: HashMap::new() }
    }

    /// Stores `value` under `name`, replacing what was there.
    #[inline]
    pub fn put_variable<T: 'static>(&mut self, name: &str, value: T) {
        self.put_boxed(name, Box::new(value));
    }

    #[inline(never)]
    pub fn put_boxed(&mut self, name: &str, value: Box<dyn Any>) {
        self.variables.insert(name.to_owned(), value);
    }

    /// False, after telling evcxr, when `name` holds a value of another type than `T`.
    #[inline]
    pub fn check_variable<T: 'static>(&mut self, name: &str) -> bool {
        self.check_type(name, TypeId::of::<T>())
    }

    #[inline(never)]
    pub fn check_type(&mut self, name: &str, expected: TypeId) -> bool {
        match self.variables.get(name) {
            Some(value) if (**value).type_id() != expected => {
                eprintln!("The type of the variable {name} was redefined, so was lost.");
                println!("{VARIABLE_CHANGED_TYPE}{name}");
                false
            }
            _ => true,
        }
    }

    /// Takes `name` out of the store. Panics when it is missing or of another type, which
    /// `check_variable` rules out first in every cell evcxr writes.
    #[inline]
    pub fn take_variable<T: 'static>(&mut self, name: &str) -> T {
        match self.take_boxed(name).downcast::<T>() {
            Ok(value) => *value,
            Err(_) => panic!("Variable changed type"),
        }
    }

    #[inline(never)]
    pub fn take_boxed(&mut self, name: &str) -> Box<dyn Any> {
        match self.variables.remove(name) {
            Some(value) => value,
            None => panic!("Variable '{name}' has gone missing"),
        }
    }

    /// The value `name` holds, shared, created by `create` the first time (evcxr keeps an async
    /// cell's tokio runtime this way).
    pub fn lazy_arc<T: 'static, F: FnOnce() -> T>(&mut self, name: &str, create: F) -> Arc<T> {
        let mut create = Some(create);
        let slot = self.slot(name, &mut || {
            let create = create.take().expect("a map entry is created once");
            Box::new(Arc::new(create())) as Box<dyn Any>
        });
        match slot.downcast_mut::<Arc<T>>() {
            Some(value) => Arc::clone(value),
            None => panic!("lazy_arc {name} changed type"),
        }
    }

    #[inline(never)]
    fn slot(&mut self, name: &str, create: &mut dyn FnMut() -> Box<dyn Any>) -> &mut Box<dyn Any> {
        self.variables.entry(name.to_owned()).or_insert_with(create)
    }

    /// Moves every variable of `other` into this store.
    pub fn merge(&mut self, mut other: VariableStore) {
        self.variables.extend(other.variables.drain());
    }
}

/// A new, empty store, owned by the caller (evcxr keeps it for the session).
pub fn create_variable_store() -> *mut VariableStore {
    Box::into_raw(Box::new(VariableStore::new()))
}
