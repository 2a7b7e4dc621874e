//! CEL expression filters (`FlowFilter.experimental.cel_expression`), as upstream's
//! `pkg/hubble/filters/cel_expression.go`: the flow is the variable `_flow`, a message
//! with protobuf field names (`_flow.l7.http.code >= 500u`, `_flow.IP.source`); enums
//! are ints and may be named (`_flow.verdict == Verdict.DROPPED`); unsigned fields
//! are uints. The expressions of one filter are alternatives; an expression that fails
//! or gives anything but `true` for a flow does not match it. Expressions are compiled
//! once per request; a flow is converted only when a CEL filter is present.

use std::collections::HashMap;

use cel::objects::Key;
use cel::{Context, Program, Value};

use super::FilterError;
use crate::flow::Flow;

/// A message as a CEL value.
pub trait ToCel {
    fn to_cel(&self) -> Value;
}

include!(concat!(env!("OUT_DIR"), "/hubble_cel.rs"));

/// The name upstream gives the flow in expressions.
pub const FLOW_VARIABLE: &str = "_flow";

/// A timestamp as the message it is (`seconds`, `nanos`).
pub fn timestamp(seconds: i64, nanos: i32) -> Value {
    let mut m: HashMap<Key, Value> = HashMap::with_capacity(2);
    m.insert("seconds".into(), Value::Int(seconds));
    m.insert("nanos".into(), Value::Int(i64::from(nanos)));
    Value::Map(m.into())
}

/// An enum's values by name.
pub fn constants(values: &[(&str, i64)]) -> Value {
    let m: HashMap<Key, Value> = values
        .iter()
        .map(|(name, number)| (Key::from(*name), Value::Int(*number)))
        .collect();
    Value::Map(m.into())
}

/// The compiled expressions of one FlowFilter.
pub struct CelFilter {
    programs: Vec<Program>,
    root: Context<'static, 'static>,
}

impl std::fmt::Debug for CelFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CelFilter({} expressions)", self.programs.len())
    }
}

impl CelFilter {
    /// Compiles `exprs`; a bad one is an error naming it.
    pub fn compile(exprs: &[String]) -> Result<Self, FilterError> {
        let programs = exprs
            .iter()
            .map(|expr| {
                Program::compile(expr).map_err(|e| FilterError::InvalidCel {
                    expression: expr.clone(),
                    reason: e.to_string(),
                })
            })
            .collect::<Result<_, _>>()?;
        let mut root = Context::default();
        let mut package: HashMap<Key, Value> = HashMap::new();
        for (name, values) in enums() {
            package.insert(name.into(), values.clone());
            root.add_variable_from_value(name, values);
        }
        root.add_variable_from_value("flow", Value::Map(package.into()));
        let filter = Self { programs, root };
        // Upstream type-checks each expression to bool. Without a checker, an
        // expression that gives another type for an empty flow is refused the same way.
        let mut ctx = filter.root.new_inner_scope();
        ctx.add_variable_from_value(FLOW_VARIABLE, Flow::default().to_cel());
        for (expr, program) in exprs.iter().zip(&filter.programs) {
            if let Ok(value) = program.execute(&ctx) {
                if let Some(name) = type_name(&value) {
                    return Err(FilterError::InvalidCel {
                        expression: expr.clone(),
                        reason: format!("got {name:?}, wanted \"bool\" result type"),
                    });
                }
            }
        }
        drop(ctx);
        Ok(filter)
    }

    /// Whether one expression gives `true` for `flow`.
    pub fn matches(&self, flow: &Flow) -> bool {
        let mut ctx = self.root.new_inner_scope();
        ctx.add_variable_from_value(FLOW_VARIABLE, flow.to_cel());
        self.programs
            .iter()
            .any(|p| matches!(p.execute(&ctx), Ok(Value::Bool(true))))
    }
}

/// The CEL type name of a value that is not a bool.
fn type_name(value: &Value) -> Option<&'static str> {
    Some(match value {
        Value::Bool(_) => return None,
        Value::Int(_) => "int",
        Value::UInt(_) => "uint",
        Value::Float(_) => "double",
        Value::String(_) => "string",
        Value::Bytes(_) => "bytes",
        Value::List(_) => "list",
        Value::Map(_) => "map",
        Value::Null => "null_type",
        _ => "dyn",
    })
}
