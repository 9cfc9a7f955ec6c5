//! What every client saw: one [`Event`] per request (or background step),
//! with when it started and ended and its answer, or that it has none (the
//! handler was abandoned, or the answer is otherwise unknown).

use std::sync::Mutex;
use std::time::Instant;

use serde_json::Value;

/// How a request ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The handler answered.
    Answer { status: u16, body: Value },
    /// The handler was dropped at an await point (a Lambda timing out): its
    /// writes may or may not have landed.
    Crashed,
}

impl Outcome {
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Answer { status, .. } => Some(*status),
            Self::Crashed => None,
        }
    }

    pub fn body(&self) -> &Value {
        match self {
            Self::Answer { body, .. } => body,
            Self::Crashed => &Value::Null,
        }
    }

    /// A success (2xx).
    pub fn ok(&self) -> bool {
        self.status().is_some_and(|s| (200..300).contains(&s))
    }

    /// A definite refusal: a 4xx says the request changed nothing.
    pub fn refused(&self) -> bool {
        self.status().is_some_and(|s| (400..500).contains(&s))
    }

    /// Neither a success nor a refusal: a 5xx or no answer; the change may
    /// or may not have happened.
    pub fn unsure(&self) -> bool {
        !self.ok() && !self.refused()
    }
}

/// One request and its outcome.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: usize,
    /// `w3` (worker 3), `lib` (the library writer), `bg` (background work).
    pub actor: String,
    pub name: String,
    pub op: &'static str,
    /// What was asked: path parameters, body, headers.
    pub request: Value,
    pub start_ms: u64,
    pub end_ms: u64,
    pub outcome: Outcome,
}

impl Event {
    /// One line of a history excerpt.
    pub fn line(&self) -> String {
        let outcome = match &self.outcome {
            Outcome::Answer { status, body, .. } => {
                let mut text = body.to_string();
                if text.len() > 240 {
                    text.truncate(240);
                    text.push('…');
                }
                format!("{status} {text}")
            }
            Outcome::Crashed => "crashed (no answer)".to_owned(),
        };
        format!(
            "#{:<5} {:>6}–{:<6}ms {:<4} {:<14} {} {} → {}",
            self.id,
            self.start_ms,
            self.end_ms,
            self.actor,
            self.op,
            self.name,
            self.request,
            outcome
        )
    }
}

/// Every event of a run, in the order they ended.
pub struct History {
    base: Instant,
    events: Mutex<Vec<Event>>,
    /// Requests under way: (actor, op, name, start).
    pub running: Mutex<Vec<(String, &'static str, String, u64)>>,
}

impl Default for History {
    fn default() -> Self {
        Self {
            base: Instant::now(),
            events: Mutex::new(Vec::new()),
            running: Mutex::new(Vec::new()),
        }
    }
}

impl History {
    /// Milliseconds since the run started.
    pub fn now(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    pub fn begin(&self, actor: &str, name: &str, op: &'static str) -> u64 {
        let start = self.now();
        if let Ok(mut running) = self.running.lock() {
            running.push((actor.to_owned(), op, name.to_owned(), start));
        }
        start
    }

    pub fn record(
        &self,
        actor: &str,
        name: &str,
        op: &'static str,
        request: Value,
        start_ms: u64,
        outcome: Outcome,
    ) -> Event {
        let end_ms = self.now();
        if let Ok(mut running) = self.running.lock()
            && let Some(at) = running
                .iter()
                .position(|r| r.0 == actor && r.1 == op && r.2 == name && r.3 == start_ms)
        {
            running.swap_remove(at);
        }
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let event = Event {
            id: events.len(),
            actor: actor.to_owned(),
            name: name.to_owned(),
            op,
            request,
            start_ms,
            end_ms,
            outcome,
        };
        events.push(event.clone());
        event
    }

    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
