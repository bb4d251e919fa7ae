//! tripline: a Kubernetes audit-log analyzer. Decodes kube-apiserver audit events, matches them
//! against Sigma detection rules and renders alerts as Elastic Common Schema documents.

pub mod ack;
pub mod alert;
pub mod config;
pub mod detect;
pub mod event;
pub mod pipeline;
pub mod policy;
pub mod rules;
pub mod sink;
pub mod source;
pub mod telemetry;
pub mod tls;
