//! Expansion of a rules file's `macro:` and `list:` items into a condition, giving a tree
//! without macro references or list names.
//!
//! Falco (falcosecurity/falco `userspace/engine/rule_loader_compiler.cpp`) replaces list
//! names in the condition text before parsing (`resolve_list`: a name between delimiters
//! ` \t\n\r(),=` becomes its items), expands list items that name other lists
//! (`compile_list_infos`), and substitutes macro references in the parsed tree
//! (`filter_macro_resolver`), failing on an undefined macro. Here the same happens on the
//! tree: a bare item of a list literal that names a list becomes that list's items (quoted
//! items are never names, as the text replacement does not see past quotes), list items that
//! name lists are expanded recursively, and a bare identifier after a list operator
//! (`field in name`) must name a list.

use std::collections::HashMap;
use std::fmt;

use super::condition::{Check, Expr, ListItem, Operand};

/// Why a condition could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpandError {
    /// A macro reference names no macro.
    UndefinedMacro {
        /// The name.
        name: String,
        /// Byte offset of the reference in the condition where it appears.
        offset: usize,
    },
    /// `field in name` where `name` is no list.
    UndefinedList {
        /// The name.
        name: String,
        /// Byte offset of the field of the comparison.
        offset: usize,
    },
    /// A macro refers to itself, directly or through others (the chain of names).
    MacroCycle(Vec<String>),
    /// A list contains itself, directly or through others (the chain of names).
    ListCycle(Vec<String>),
}

impl fmt::Display for ExpandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpandError::UndefinedMacro { name, offset } => {
                write!(f, "at byte {offset}: undefined macro '{name}'")
            }
            ExpandError::UndefinedList { name, offset } => {
                write!(f, "at byte {offset}: undefined list '{name}'")
            }
            ExpandError::MacroCycle(chain) => {
                write!(
                    f,
                    "macro '{}' refers to itself: {}",
                    first(chain),
                    chain.join(" -> ")
                )
            }
            ExpandError::ListCycle(chain) => {
                write!(
                    f,
                    "list '{}' contains itself: {}",
                    first(chain),
                    chain.join(" -> ")
                )
            }
        }
    }
}

impl std::error::Error for ExpandError {}

fn first(chain: &[String]) -> &str {
    chain.first().map(String::as_str).unwrap_or_default()
}

/// The `list:` and `macro:` items of a rules file, by name (a later definition replaces an
/// earlier one; appending is the caller's business).
#[derive(Debug, Clone, Default)]
pub struct Definitions {
    lists: HashMap<String, Vec<String>>,
    macros: HashMap<String, Expr>,
}

impl Definitions {
    /// No lists, no macros.
    pub fn new() -> Self {
        Self::default()
    }

    /// Defines the list `name` (its items may name other lists).
    pub fn add_list(&mut self, name: &str, items: Vec<String>) {
        self.lists.insert(name.to_string(), items);
    }

    /// Defines the macro `name` by its parsed condition.
    pub fn add_macro(&mut self, name: &str, condition: Expr) {
        self.macros.insert(name.to_string(), condition);
    }

    /// The items of list `name`, with the lists they name expanded.
    pub fn list_items(&self, name: &str) -> Result<Option<Vec<String>>, ExpandError> {
        if !self.lists.contains_key(name) {
            return Ok(None);
        }
        let mut out = Vec::new();
        self.push_list(name, &mut Vec::new(), &mut out)?;
        Ok(Some(out))
    }

    /// `expr` with every macro reference replaced by the macro's expanded condition and every
    /// list name by the list's items.
    pub fn expand(&self, expr: &Expr) -> Result<Expr, ExpandError> {
        self.expand_in(expr, &mut Vec::new())
    }

    fn expand_in(&self, expr: &Expr, stack: &mut Vec<String>) -> Result<Expr, ExpandError> {
        Ok(match expr {
            Expr::And(c) => Expr::And(self.expand_all(c, stack)?),
            Expr::Or(c) => Expr::Or(self.expand_all(c, stack)?),
            Expr::Not(c) => Expr::Not(Box::new(self.expand_in(c, stack)?)),
            Expr::Macro { name, offset } => self.expand_macro(name, *offset, stack)?,
            Expr::Check(check) => Expr::Check(self.expand_check(check)?),
        })
    }

    fn expand_all(&self, c: &[Expr], stack: &mut Vec<String>) -> Result<Vec<Expr>, ExpandError> {
        c.iter().map(|e| self.expand_in(e, stack)).collect()
    }

    fn expand_macro(
        &self,
        name: &str,
        offset: usize,
        stack: &mut Vec<String>,
    ) -> Result<Expr, ExpandError> {
        let body = self
            .macros
            .get(name)
            .ok_or_else(|| ExpandError::UndefinedMacro {
                name: name.to_string(),
                offset,
            })?;
        if let Some(at) = stack.iter().position(|n| n == name) {
            let mut chain = stack[at..].to_vec();
            chain.push(name.to_string());
            return Err(ExpandError::MacroCycle(chain));
        }
        stack.push(name.to_string());
        let out = self.expand_in(body, stack);
        stack.pop();
        out
    }

    fn expand_check(&self, check: &Check) -> Result<Check, ExpandError> {
        let operand = match &check.operand {
            Operand::List(items) => Operand::List(self.expand_items(items)?),
            Operand::ListName(name) => match self.list_items(name)? {
                Some(items) => Operand::List(literal(items)),
                None => {
                    return Err(ExpandError::UndefinedList {
                        name: name.clone(),
                        offset: check.offset,
                    })
                }
            },
            other => other.clone(),
        };
        Ok(Check {
            operand,
            ..check.clone()
        })
    }

    fn expand_items(&self, items: &[ListItem]) -> Result<Vec<ListItem>, ExpandError> {
        let mut out = Vec::new();
        for item in items {
            match self.list_items(&item.text)? {
                Some(expanded) if item.bare => out.extend(literal(expanded)),
                _ => out.push(ListItem {
                    text: item.text.clone(),
                    bare: false,
                }),
            }
        }
        Ok(out)
    }

    fn push_list(
        &self,
        name: &str,
        stack: &mut Vec<String>,
        out: &mut Vec<String>,
    ) -> Result<(), ExpandError> {
        if let Some(at) = stack.iter().position(|n| n == name) {
            let mut chain = stack[at..].to_vec();
            chain.push(name.to_string());
            return Err(ExpandError::ListCycle(chain));
        }
        stack.push(name.to_string());
        for item in self.lists.get(name).map(Vec::as_slice).unwrap_or_default() {
            if self.lists.contains_key(item) {
                self.push_list(item, stack, out)?;
            } else {
                out.push(item.clone());
            }
        }
        stack.pop();
        Ok(())
    }
}

/// Items that are values, never names.
fn literal(items: Vec<String>) -> Vec<ListItem> {
    items
        .into_iter()
        .map(|text| ListItem { text, bare: false })
        .collect()
}
