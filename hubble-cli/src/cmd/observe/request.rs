//! Building the `GetFlows` request from selector flags, filters and raw filters,
//! with upstream's checks and defaults.

use chrono::{DateTime, Utc};
use proto::flow::FlowFilter;
use proto::observer::GetFlowsRequest;

use crate::cli::SelectorArgs;
use crate::filters::values::parse_uint;
use crate::quote::go_quote;
use crate::time::{parse_time, MAX_VALID_SECONDS, MIN_VALID_SECONDS};

/// Flows printed when neither follow mode nor a range is asked for.
pub const DEFAULT_FLOW_COUNT: u64 = 20;

/// Fields requested by default for the text formats: upstream's list plus
/// `traffic_direction` and `policy_match_type`, which the TYPE column of policy verdicts
/// prints (`policy-verdict:L3-L4 INGRESS`). Upstream v1.19 omits them and so prints
/// `policy-verdict:none TRAFFIC_DIRECTION_UNKNOWN` against a server that honours masks.
pub const DEFAULT_FIELD_MASK: &[&str] = &[
    "time",
    "verdict",
    "ethernet",
    "IP",
    "l4",
    "source.identity",
    "source.namespace",
    "source.pod_name",
    "destination.identity",
    "destination.namespace",
    "destination.pod_name",
    "Type",
    "node_name",
    "l7",
    "event_type",
    "source_service",
    "destination_service",
    "is_reply",
    "Summary",
    "ip_trace_id",
    "traffic_direction",
    "policy_match_type",
];

/// Selector flags after parsing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selectors {
    pub all: bool,
    pub first: u64,
    pub last: u64,
    pub follow: bool,
    pub since: Option<String>,
    pub until: Option<String>,
}

/// Parses `--first`/`--last` as pflag's uint64 flags do.
pub fn parse_selectors(args: &SelectorArgs) -> anyhow::Result<Selectors> {
    let number = |name: &str, value: &Option<String>| -> anyhow::Result<u64> {
        match value {
            None => Ok(0),
            Some(v) => parse_uint(v, 64).map_err(|e| {
                anyhow::anyhow!(
                    "invalid argument {} for {} flag: {e}",
                    go_quote(v),
                    go_quote(&format!("--{name}"))
                )
            }),
        }
    };
    Ok(Selectors {
        all: args.all.unwrap_or(false),
        first: number("first", &args.first)?,
        last: number("last", &args.last)?,
        follow: args.follow.unwrap_or(false),
        since: args.since.clone(),
        until: args.until.clone(),
    })
}

/// Number, range and follow mode of a request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Range {
    pub number: u64,
    pub first: bool,
    pub follow: bool,
    pub since: Option<pbjson_types::Timestamp>,
    pub until: Option<pbjson_types::Timestamp>,
}

fn timestamp(
    which: &str,
    value: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<pbjson_types::Timestamp> {
    let t = parse_time(value, now)
        .map_err(|e| anyhow::anyhow!("failed to parse the {which} time: {e}"))?;
    let ts = pbjson_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    };
    if ts.seconds < MIN_VALID_SECONDS {
        anyhow::bail!(
            "failed to convert `{which}` timestamp to proto: proto: timestamp (seconds:{} nanos:{}) before 0001-01-01",
            ts.seconds,
            ts.nanos
        );
    }
    if ts.seconds > MAX_VALID_SECONDS {
        anyhow::bail!(
            "failed to convert `{which}` timestamp to proto: proto: timestamp (seconds:{} nanos:{}) after 9999-12-31",
            ts.seconds,
            ts.nanos
        );
    }
    Ok(ts)
}

/// Checks selector combinations and applies upstream's defaults (`--all` is the
/// largest `--last`; plain `hubble observe` means `--last 20`, except with
/// `--input-file`).
pub fn range(sel: &Selectors, input_file: bool, now: DateTime<Utc>) -> anyhow::Result<Range> {
    let first = sel.first > 0;
    let last = sel.last > 0;
    if first && last {
        anyhow::bail!("cannot set both --first and --last");
    }
    if first && sel.all {
        anyhow::bail!("cannot set both --first and --all");
    }
    if first && sel.follow {
        anyhow::bail!("cannot set both --first and --follow");
    }
    if last && sel.all {
        anyhow::bail!("cannot set both --last and --all");
    }
    let since = match &sel.since {
        Some(v) if !v.is_empty() => Some(timestamp("since", v, now)?),
        _ => None,
    };
    let until = match &sel.until {
        Some(v) if !v.is_empty() && !sel.follow => Some(timestamp("until", v, now)?),
        _ => None,
    };
    let mut number = sel.last;
    if since.is_none() && until.is_none() && !first {
        if sel.all {
            number = u64::MAX;
        } else if sel.last == 0 && !sel.follow && !input_file {
            number = DEFAULT_FLOW_COUNT;
        }
    }
    if first {
        number = sel.first;
    }
    Ok(Range {
        number,
        first,
        follow: sel.follow,
        since,
        until,
    })
}

/// Decodes `--allowlist`/`--denylist` values: each holds one or more JSON FlowFilters.
pub fn parse_raw_filters(flag: &str, values: &[String]) -> anyhow::Result<Vec<FlowFilter>> {
    let mut out = Vec::new();
    for value in values {
        let stream = serde_json::Deserializer::from_str(value).into_iter::<FlowFilter>();
        for filter in stream {
            let filter = filter.map_err(|e| {
                anyhow::anyhow!("invalid --{flag} flag: failed to decode '{value}': {e}")
            })?;
            out.push(filter);
        }
    }
    Ok(out)
}

/// Checks the field mask paths against `flow.Flow` (the mask the servers compile),
/// failing as upstream's `fieldmaskpb.New` does with the first bad path.
pub fn check_field_mask(paths: &[String]) -> Result<(), String> {
    proto::fieldmask::FieldMask::compile(paths)
        .map(drop)
        .map_err(|e| {
            format!(
                "failed to construct field mask: proto: invalid path {} for message \"flow.Flow\"",
                crate::quote::go_quote(e.path().unwrap_or_default())
            )
        })
}

/// Assembles the request.
pub fn request(
    range: Range,
    allow: Vec<FlowFilter>,
    deny: Vec<FlowFilter>,
    field_mask: &[String],
) -> GetFlowsRequest {
    GetFlowsRequest {
        number: range.number,
        first: range.first,
        follow: range.follow,
        whitelist: allow,
        blacklist: deny,
        since: range.since,
        until: range.until,
        field_mask: (!field_mask.is_empty()).then(|| pbjson_types::FieldMask {
            paths: field_mask.to_vec(),
        }),
        ..Default::default()
    }
}

/// The YAML `--print-raw-filters` prints: each filter as upstream JSON.
pub fn raw_filters_yaml(req: &GetFlowsRequest) -> String {
    let allow: Vec<String> = req.whitelist.iter().map(proto::json::to_string).collect();
    let deny: Vec<String> = req.blacklist.iter().map(proto::json::to_string).collect();
    crate::config::yaml::emit_string_lists(&[("allowlist", &allow), ("denylist", &deny)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_mask_paths_are_checked_against_flow() {
        let paths: Vec<String> = DEFAULT_FIELD_MASK.iter().map(|s| s.to_string()).collect();
        assert_eq!(check_field_mask(&paths), Ok(()));
        assert_eq!(
            check_field_mask(&["source.nope".to_string()]),
            Err("failed to construct field mask: proto: invalid path \"source.nope\" for message \"flow.Flow\"".to_string())
        );
        assert!(check_field_mask(&["time.seconds".to_string()]).is_ok());
    }
}
