//! Progressive rollouts (SPEC 10.1) as values and pure rules: the plan
//! (weighted steps with holds, or a CodeDeploy-like preset), the alarms a
//! rollout watches, its states, and the driver's decision for one rollout
//! at one instant. No I/O: the store applies what [`decide`] says.

use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use crate::error::{Error, Result};

/// Shortest and longest hold of a step.
pub const MIN_HOLD: Duration = Duration::from_secs(1);
pub const MAX_HOLD: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Most steps of one rollout (the last, 100 %, included).
pub const MAX_STEPS: usize = 20;
/// Most alarms one rollout watches (one DescribeAlarms call reads 100).
pub const MAX_ALARMS: usize = 10;

/// One step: the new version gets `weight` percent of the traffic, for
/// `hold` before the next step. The last step is 100 % and has no hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub weight: u8,
    pub hold: Option<Duration>,
}

impl Serialize for Step {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("weight", &self.weight)?;
        if let Some(hold) = self.hold {
            map.serialize_entry("hold", &format_hold(hold))?;
        }
        map.end()
    }
}

/// `30s`, `5m`, `2h`, `1d`: a whole number of one unit, 1 s to 7 d.
pub fn parse_hold(text: &str) -> Result<Duration> {
    let invalid = || {
        Error::InvalidRequest(format!(
            "hold {text:?} is not a duration like 30s, 5m, 2h or 1d from 1s to 7d"
        ))
    };
    let unit = match text.chars().last() {
        Some('s') => 1,
        Some('m') => 60,
        Some('h') => 3600,
        Some('d') => 86_400,
        _ => return Err(invalid()),
    };
    let digits = &text[..text.len() - 1];
    if digits.is_empty() || digits.len() > 7 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let n: u64 = digits.parse().map_err(|_| invalid())?;
    let hold = Duration::from_secs(n * unit);
    if hold < MIN_HOLD || hold > MAX_HOLD {
        return Err(invalid());
    }
    Ok(hold)
}

/// The largest unit that states `hold` exactly.
pub fn format_hold(hold: Duration) -> String {
    let s = hold.as_secs();
    match s {
        _ if s >= 86_400 && s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        _ if s >= 3600 && s.is_multiple_of(3600) => format!("{}h", s / 3600),
        _ if s >= 60 && s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

/// Checks a plan: 1..=[`MAX_STEPS`] steps, weights strictly increasing
/// from 1 to 100, every step below 100 % held 1 s..=7 d, the 100 % step
/// last and without a hold. A plan that stops below 100 % gets the 100 %
/// step added (the rollout always ends with the new version alone).
pub fn plan(mut steps: Vec<Step>) -> Result<Vec<Step>> {
    if steps.last().is_some_and(|s| s.weight < 100) {
        steps.push(Step {
            weight: 100,
            hold: None,
        });
    }
    if steps.is_empty() || steps.len() > MAX_STEPS {
        return Err(Error::InvalidRequest(format!(
            "a rollout has 1 to {MAX_STEPS} steps"
        )));
    }
    let mut previous = 0;
    for (i, step) in steps.iter().enumerate() {
        if step.weight == 0 || step.weight > 100 || step.weight <= previous {
            return Err(Error::InvalidWeight(format!(
                "step weights must increase strictly from 1 to 100 (step {} has {})",
                i + 1,
                step.weight
            )));
        }
        previous = step.weight;
        match (step.weight, step.hold) {
            (100, Some(_)) => {
                return Err(Error::InvalidRequest(
                    "the 100% step is the last and has no hold".into(),
                ));
            }
            (w, None) if w < 100 => {
                return Err(Error::InvalidRequest(format!(
                    "step {} ({w}%) needs a hold such as \"5m\": every step below 100% holds before the next (a plan ending below 100% ends with a 100% step added)",
                    i + 1
                )));
            }
            (_, Some(hold)) if hold < MIN_HOLD || hold > MAX_HOLD => {
                return Err(Error::InvalidRequest(format!(
                    "step {} holds {}, outside 1s..=7d",
                    i + 1,
                    format_hold(hold)
                )));
            }
            _ => {}
        }
    }
    Ok(steps)
}

/// A named plan, after CodeDeploy's predefined configurations
/// (`CodeDeployDefault.LambdaCanary10Percent5Minutes`,
/// `…LambdaLinear10PercentEvery1Minute`, `…AllAtOnce`):
/// `canary-{weight}-{hold}` (one step, then 100 %),
/// `linear-{weight}-every-{hold}` (equal steps, each held), `all-at-once`.
pub fn preset(name: &str) -> Result<Vec<Step>> {
    let unknown = || {
        Error::InvalidRequest(format!(
            "preset {name:?} is not one of all-at-once, canary-<percent>-<hold> \
             (e.g. canary-10-5m), linear-<percent>-every-<hold> (e.g. linear-10-every-1m)"
        ))
    };
    let weight = |w: &str| {
        w.parse::<u8>()
            .ok()
            .filter(|w| (1..=99).contains(w))
            .ok_or_else(unknown)
    };
    let parts: Vec<&str> = name.split('-').collect();
    let steps = match parts.as_slice() {
        ["all", "at", "once"] => vec![],
        ["canary", w, hold] => vec![Step {
            weight: weight(w)?,
            hold: Some(parse_hold(hold)?),
        }],
        ["linear", w, "every", hold] => {
            let (w, hold) = (weight(w)?, parse_hold(hold)?);
            (1..)
                .map(|i| u32::from(w) * i)
                .take_while(|total| *total < 100)
                .map(|total| Step {
                    weight: total as u8,
                    hold: Some(hold),
                })
                .collect()
        }
        _ => return Err(unknown()),
    };
    plan(
        steps
            .into_iter()
            .chain(std::iter::once(Step {
                weight: 100,
                hold: None,
            }))
            .collect(),
    )
}

/// Where the rollout driver reads alarms: its own region and account
/// (`None`: not known to this deployment, not checked).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlarmHome<'a> {
    pub region: Option<&'a str>,
    pub account: Option<&'a str>,
}

/// A CloudWatch alarm a rollout watches, by name (an alarm ARN's last
/// part: `arn:aws:cloudwatch:<region>:<account>:alarm:<name>`). An ARN of
/// another region or account than `home` is refused: the driver reads
/// alarms by name in its own, so it would watch another alarm (one of the
/// same name, or none) than the one listed.
pub fn alarm_name(text: &str, prefix: &str, home: AlarmHome<'_>) -> Result<String> {
    let name = match text.strip_prefix("arn:") {
        Some(rest) => {
            let fields: Vec<&str> = rest.splitn(5, ':').collect();
            match fields.as_slice() {
                [_, "cloudwatch", region, account, alarm] => {
                    for (what, named, own) in [
                        ("region", *region, home.region),
                        ("account", *account, home.account),
                    ] {
                        if let Some(own) = own.filter(|own| *own != named) {
                            return Err(bad_alarm(
                                text,
                                &format!(
                                    "it is in {what} {named:?}; rollouts watch alarms of this \
                                     deployment's {what}, {own:?}"
                                ),
                            ));
                        }
                    }
                    alarm
                        .strip_prefix("alarm:")
                        .ok_or_else(|| bad_alarm(text, "not an alarm ARN"))?
                }
                _ => return Err(bad_alarm(text, "not a CloudWatch alarm ARN")),
            }
        }
        None => text,
    };
    if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
        return Err(bad_alarm(text, "a name is 1 to 255 printable characters"));
    }
    if !name.starts_with(prefix) {
        return Err(bad_alarm(
            text,
            &format!("this deployment reads only alarms named {prefix}… (RolloutAlarmPrefix)"),
        ));
    }
    Ok(name.to_owned())
}

fn bad_alarm(text: &str, why: &str) -> Error {
    Error::InvalidRequest(format!("alarm {text:?}: {why}"))
}

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RolloutState {
    /// Driven: the next step comes when its hold has passed.
    Active,
    /// Holds its current step until resumed (alarms still abort it).
    Paused,
    Completed,
    Aborted,
}

impl RolloutState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::Aborted => "aborted",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        [Self::Active, Self::Paused, Self::Completed, Self::Aborted]
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                Error::InvalidRequest(format!(
                    "state {s:?} is not active, paused, completed or aborted"
                ))
            })
    }

    /// Active or paused: the rollout holds its alias.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Active | Self::Paused)
    }
}

/// What a person asks of a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutAction {
    Pause,
    Resume,
    Abort,
    /// Jump to 100 %: the rollout completes now.
    Promote,
}

impl std::str::FromStr for RolloutAction {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "pause" => Ok(Self::Pause),
            "resume" => Ok(Self::Resume),
            "abort" => Ok(Self::Abort),
            "promote" => Ok(Self::Promote),
            other => Err(Error::InvalidRequest(format!(
                "{other:?} is not pause, resume, abort or promote"
            ))),
        }
    }
}

/// An alarm's state as the driver read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmState {
    Ok,
    Alarm,
    InsufficientData,
    /// DescribeAlarms does not know it (deleted, misspelt, other region).
    Missing,
}

/// What the driver does with one rollout now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing yet (holding, paused, or finished).
    Wait,
    /// Apply step `step` (0-based) of the plan.
    Advance { step: usize },
    /// Apply the last step: the new version alone.
    Complete,
    /// Back to where the alias was; `reason` names the alarm.
    Abort { reason: String },
}

/// What the watched `alarms` say against a rollout, if anything: the first
/// in ALARM or gone (a rollout neither starts nor goes on then).
pub fn alarm_objection(alarms: &[(String, AlarmState)]) -> Option<String> {
    alarms.iter().find_map(|(name, alarm)| match alarm {
        AlarmState::Alarm => Some(format!("alarm {name} is in ALARM")),
        AlarmState::Missing => Some(format!(
            "alarm {name} does not exist (it cannot vouch for the rollout)"
        )),
        AlarmState::Ok | AlarmState::InsufficientData => None,
    })
}

/// The driver's rule: any watched alarm in ALARM (or gone) aborts a live
/// rollout at any check, paused or not; otherwise an active rollout whose
/// hold has passed takes its next step, the last one completing it.
/// `INSUFFICIENT_DATA` neither blocks nor aborts (an alarm on a quiet
/// metric, as CodeDeploy treats it).
pub fn decide(
    state: RolloutState,
    step: usize,
    steps: &[Step],
    next_step_at: Option<OffsetDateTime>,
    alarms: &[(String, AlarmState)],
    now: OffsetDateTime,
) -> Decision {
    if !state.is_live() {
        return Decision::Wait;
    }
    if let Some(reason) = alarm_objection(alarms) {
        return Decision::Abort { reason };
    }
    if state == RolloutState::Paused || next_step_at.is_some_and(|at| at > now) {
        return Decision::Wait;
    }
    let next = step + 1;
    if next + 1 >= steps.len() {
        Decision::Complete
    } else {
        Decision::Advance { step: next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn only_an_alarm_in_alarm_or_gone_objects_and_the_first_is_named() {
        type Case<'a> = (&'a [(String, AlarmState)], Option<&'a str>);
        let a = |name: &str, state| (name.to_owned(), state);
        let cases: [Case; 5] = [
            (&[], None),
            (
                &[
                    a("ok", AlarmState::Ok),
                    a("quiet", AlarmState::InsufficientData),
                ],
                None,
            ),
            (
                &[a("ok", AlarmState::Ok), a("5xx", AlarmState::Alarm)],
                Some("alarm 5xx is in ALARM"),
            ),
            (
                &[a("typo", AlarmState::Missing)],
                Some("alarm typo does not exist (it cannot vouch for the rollout)"),
            ),
            (
                &[
                    a("first", AlarmState::Alarm),
                    a("second", AlarmState::Missing),
                ],
                Some("alarm first is in ALARM"),
            ),
        ];
        for (alarms, objection) in cases {
            assert_eq!(alarm_objection(alarms).as_deref(), objection, "{alarms:?}");
        }
    }

    fn step(weight: u8, hold: Option<u64>) -> Step {
        Step {
            weight,
            hold: hold.map(Duration::from_secs),
        }
    }

    #[test]
    fn holds_are_whole_units_from_one_second_to_seven_days() {
        assert_eq!(parse_hold("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_hold("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_hold("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_hold("7d").unwrap(), MAX_HOLD);
        for bad in [
            "0s",
            "8d",
            "169h",
            "5",
            "m",
            "1.5m",
            "-1m",
            "5 m",
            "",
            "99999999s",
        ] {
            assert!(parse_hold(bad).is_err(), "{bad}");
        }
        assert_eq!(format_hold(Duration::from_secs(300)), "5m");
        assert_eq!(format_hold(Duration::from_secs(90)), "90s");
        assert_eq!(format_hold(Duration::from_secs(86_400)), "1d");
    }

    #[test]
    fn a_plan_rises_strictly_to_a_last_unheld_hundred() {
        assert_eq!(
            plan(vec![step(10, Some(60)), step(50, Some(60))]).unwrap(),
            [step(10, Some(60)), step(50, Some(60)), step(100, None)]
        );
        assert!(plan(vec![step(50, Some(1)), step(10, Some(1))]).is_err());
        assert!(plan(vec![step(10, None), step(100, None)]).is_err());
        assert!(plan(vec![step(100, Some(5))]).is_err());
        assert!(plan(vec![step(0, Some(5))]).is_err());
        assert!(plan(vec![step(101, None)]).is_err());
        assert!(plan(vec![]).is_err());
        assert_eq!(plan(vec![step(100, None)]).unwrap(), [step(100, None)]);
    }

    #[test]
    fn presets_follow_codedeploys_canary_and_linear_shapes() {
        assert_eq!(
            preset("canary-10-5m").unwrap(),
            [step(10, Some(300)), step(100, None)]
        );
        let linear = preset("linear-10-every-1m").unwrap();
        assert_eq!(linear.len(), 10);
        assert_eq!(linear[8], step(90, Some(60)));
        assert_eq!(preset("linear-30-every-2h").unwrap().len(), 4);
        assert_eq!(preset("all-at-once").unwrap(), [step(100, None)]);
        for bad in [
            "canary-0-5m",
            "canary-100-5m",
            "canary-10",
            "linear-10-1m",
            "blue-green",
        ] {
            assert!(preset(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn alarms_are_named_by_arn_or_name_within_the_configured_prefix() {
        let arn = "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:app-errors";
        let anywhere = AlarmHome::default();
        let home = |region, account| AlarmHome {
            region: Some(region),
            account: Some(account),
        };
        assert_eq!(alarm_name(arn, "", anywhere).unwrap(), "app-errors");
        assert_eq!(
            alarm_name(arn, "", home("eu-west-1", "123456789012")).unwrap(),
            "app-errors"
        );
        // Another region's or account's alarm would be read as this one's.
        for (region, account) in [("us-east-1", "123456789012"), ("eu-west-1", "999999999999")] {
            assert!(alarm_name(arn, "", home(region, account)).is_err());
        }
        assert_eq!(
            alarm_name("app-errors", "app-", anywhere).unwrap(),
            "app-errors"
        );
        assert!(alarm_name("other", "app-", anywhere).is_err());
        assert!(alarm_name("arn:aws:sns:eu-west-1:1:topic", "", anywhere).is_err());
        assert!(alarm_name("", "", anywhere).is_err());
    }

    #[test]
    fn an_alarm_aborts_at_any_check_and_a_passed_hold_advances() {
        let steps = [step(10, Some(60)), step(50, Some(60)), step(100, None)];
        let now = datetime!(2026-01-01 12:00 UTC);
        let later = Some(now + time::Duration::minutes(1));
        let earlier = Some(now - time::Duration::seconds(1));
        let ok = [("a".to_owned(), AlarmState::Ok)];
        let alarm = [("a".to_owned(), AlarmState::Alarm)];
        let active = RolloutState::Active;
        assert_eq!(decide(active, 0, &steps, later, &ok, now), Decision::Wait);
        assert_eq!(
            decide(active, 0, &steps, earlier, &ok, now),
            Decision::Advance { step: 1 }
        );
        assert_eq!(
            decide(active, 1, &steps, earlier, &ok, now),
            Decision::Complete
        );
        assert!(matches!(
            decide(active, 0, &steps, later, &alarm, now),
            Decision::Abort { reason } if reason.contains("alarm a is in ALARM")
        ));
        assert!(matches!(
            decide(RolloutState::Paused, 0, &steps, None, &alarm, now),
            Decision::Abort { .. }
        ));
        assert_eq!(
            decide(RolloutState::Paused, 0, &steps, None, &ok, now),
            Decision::Wait
        );
        let quiet = [("a".to_owned(), AlarmState::InsufficientData)];
        assert_eq!(
            decide(active, 0, &steps, earlier, &quiet, now),
            Decision::Advance { step: 1 }
        );
        let gone = [("a".to_owned(), AlarmState::Missing)];
        assert!(matches!(
            decide(active, 0, &steps, later, &gone, now),
            Decision::Abort { .. }
        ));
        assert_eq!(
            decide(RolloutState::Aborted, 0, &steps, earlier, &alarm, now),
            Decision::Wait
        );
    }
}
