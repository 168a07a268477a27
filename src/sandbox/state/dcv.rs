//! Domain validation as the sandbox keeps it: which base domains of an order are validated and
//! until when, the order's random value, and what a request still lacks.

use super::{Domain, Order, RandomValue, State, base_domain, now_s};

impl State {
    /// The base domains of `names` whose validation does not hold now.
    pub(in crate::sandbox) fn unvalidated(&self, order: &Order, names: &[String]) -> Vec<String> {
        let now = now_s();
        let mut out = Vec::new();
        for n in names {
            let base = base_domain(n);
            let ok = !order.dv && covered(order, base, now);
            if !ok && !out.iter().any(|o: &String| o == base) {
                out.push(base.to_owned());
            }
        }
        out
    }

    /// The order's random value, a new one if there is none or it expired (dcv.md).
    pub(in crate::sandbox) fn random_value(&mut self, order_id: u64) -> Option<RandomValue> {
        let now = now_s();
        let lifetime = i64::try_from(self.cfg.dcv_value_lifetime.as_secs()).unwrap_or(i64::MAX);
        let order = self.data.orders.get_mut(&order_id)?;
        match &order.random_value {
            Some(v) if v.expires > now => Some(v.clone()),
            _ => {
                let bytes: [u8; 16] = rand::random();
                let v = RandomValue {
                    value: bytes.iter().map(|b| format!("{b:02x}")).collect(),
                    expires: now.saturating_add(lifetime),
                };
                order.random_value = Some(v.clone());
                self.dirty = true;
                Some(v)
            }
        }
    }

    /// Records that `domains` of the order were validated now.
    pub(in crate::sandbox) fn validated(&mut self, order_id: u64, domains: &[String]) {
        let now = now_s();
        let reuse = i64::try_from(self.cfg.dcv_reuse.as_secs()).unwrap_or(i64::MAX);
        if let Some(order) = self.data.orders.get_mut(&order_id) {
            for d in order
                .domains
                .iter_mut()
                .filter(|d| domains.contains(&d.name))
            {
                d.validated_until = now.saturating_add(reuse);
            }
            for n in domains {
                if !order.domains.iter().any(|d| &d.name == n) {
                    let id = Self::next(&mut self.data.next_domain);
                    order.domains.push(Domain {
                        id,
                        name: n.clone(),
                        validated_until: now.saturating_add(reuse),
                    });
                }
            }
        }
        let still: Vec<(usize, bool)> = self
            .data
            .subs
            .iter()
            .enumerate()
            .filter(|(_, x)| x.order_id == order_id && x.awaiting_dcv)
            .map(|(i, x)| {
                let order = self.data.orders.get(&order_id);
                let left = order.map(|o| self.validated_names_left(o, &x.new.dns_names));
                (i, left.unwrap_or(true))
            })
            .collect();
        for (i, left) in still {
            if !left {
                self.data.subs[i].awaiting_dcv = false;
            }
        }
        self.dirty = true;
        self.tick();
    }

    /// Whether some of `names` still lack validation (DV orders: validated just now counts).
    fn validated_names_left(&self, order: &Order, names: &[String]) -> bool {
        let now = now_s();
        names.iter().any(|n| !covered(order, base_domain(n), now))
    }
}

/// Whether a validated domain of the order covers `base` (the domain itself or a parent: a
/// validated domain covers its subdomains).
fn covered(order: &Order, base: &str, now: i64) -> bool {
    order.domains.iter().any(|d| {
        d.validated_until > now
            && (base == d.name
                || base
                    .strip_suffix(&d.name)
                    .is_some_and(|rest| rest.ends_with('.')))
    })
}
