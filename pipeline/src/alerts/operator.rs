//! The timely operators that evaluate alerts: one on the symbol-exchanged quote stream,
//! one on the signal stream. Both pass their input on unchanged and append what fired to a
//! per-worker buffer that the sink operator of the same worker drains before it reads its
//! frontier (so an alert at time `t` travels in the batch whose frontier passes `t`).

use std::cell::RefCell;
use std::rc::Rc;

use pricestream_schemas::AlertEvent;
use timely::dataflow::channels::pact::{ParallelizationContract, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;

use super::index::Evaluator;
use super::shared::SharedRules;
use crate::dataflow::{Output, Record};
use crate::metrics as m;

/// A worker's evaluator, kept in step with the shared index.
pub struct WorkerAlerts {
    shared: SharedRules,
    version: u64,
    evaluator: Evaluator,
    /// Alerts fired and not yet taken by the sink.
    pub fired: Vec<AlertEvent>,
}

impl WorkerAlerts {
    pub fn new(shared: SharedRules) -> Self {
        WorkerAlerts {
            shared,
            version: 0,
            evaluator: Evaluator::default(),
            fired: Vec::new(),
        }
    }

    fn sync(&mut self) {
        if self.shared.version() != self.version {
            let (v, index) = self.shared.current();
            self.evaluator.replace_index(index);
            self.version = v;
        }
    }
}

/// Evaluates every quote of `stream` (exchanged by `pact`, by symbol) and passes the
/// records on.
pub fn evaluate_quotes<'s, P>(
    stream: Stream<'s, u64, Vec<Record>>,
    pact: P,
    alerts: Rc<RefCell<WorkerAlerts>>,
) -> Stream<'s, u64, Vec<Record>>
where
    P: ParallelizationContract<u64, Vec<Record>>,
{
    stream.unary(pact, "AlertQuotes", move |_cap, _info| {
        move |input, output| {
            let mut guard = alerts.borrow_mut();
            let state = &mut *guard;
            state.sync();
            let before = state.fired.len();
            input.for_each_stamp(|cap, data| {
                let Some(&t) = cap.least() else { return };
                let out_cap = cap.delayed(&t, 0);
                let mut session = output.session(&out_cap);
                for batch in data {
                    if !state.evaluator.index().is_empty() {
                        for r in batch.iter() {
                            if let Record::Quote { quote, .. } = r {
                                state.evaluator.on_quote(quote, &mut state.fired);
                            }
                        }
                    }
                    session.give_container(batch);
                }
            });
            let fired = state.fired.len() - before;
            if fired > 0 {
                metrics::counter!(m::ALERTS_FIRED, "source" => "quote").increment(fired as u64);
            }
        }
    })
}

/// Evaluates the signals of `stream` and passes everything on.
pub fn evaluate_signals<'s>(
    stream: Stream<'s, u64, Vec<Output>>,
    alerts: Rc<RefCell<WorkerAlerts>>,
) -> Stream<'s, u64, Vec<Output>> {
    stream.unary(Pipeline, "AlertSignals", move |_cap, _info| {
        move |input, output| {
            let mut guard = alerts.borrow_mut();
            let state = &mut *guard;
            state.sync();
            let before = state.fired.len();
            input.for_each_stamp(|cap, data| {
                let Some(&t) = cap.least() else { return };
                let out_cap = cap.delayed(&t, 0);
                let mut session = output.session(&out_cap);
                for batch in data {
                    if !state.evaluator.index().is_empty() {
                        for o in batch.iter() {
                            if let Output::Signal(s) = o {
                                state.evaluator.on_signal(s, &mut state.fired);
                            }
                        }
                    }
                    session.give_container(batch);
                }
            });
            let fired = state.fired.len() - before;
            if fired > 0 {
                metrics::counter!(m::ALERTS_FIRED, "source" => "signal").increment(fired as u64);
            }
        }
    })
}
