//! Requests through their life: a reissue or duplicate is recorded, moves with the clock
//! (approval, validation) and is issued by the sandbox's CA.

use super::{
    Cert, NewSubmission, State, SubStatus, Submission, SubmitKind, ms, now_ms, now_s, order_end,
};
use crate::sandbox::ca::LeafSpec;
use crate::sandbox::faults::FaultKind;

impl State {
    /// Records a reissue or duplicate of the order; returns its index.
    pub(in crate::sandbox) fn submit(
        &mut self,
        order_id: u64,
        kind: SubmitKind,
        new: NewSubmission,
    ) -> usize {
        let now = now_ms();
        let approve_at = if new.skip_approval {
            now
        } else {
            now.saturating_add(ms(self.cfg.approval_delay))
        };
        let mut cert_faults = Vec::new();
        while let Some(f) = self.take_fault(|k| {
            matches!(
                k,
                FaultKind::WrongKey
                    | FaultKind::MissingName
                    | FaultKind::Expired
                    | FaultKind::TruncatedPem
                    | FaultKind::BadChain
            )
        }) {
            cert_faults.push(f);
        }
        let awaiting_dcv = self
            .data
            .orders
            .get(&order_id)
            .is_some_and(|o| !self.unvalidated(o, &new.dns_names).is_empty());
        let sub_id = u32::try_from(
            self.data
                .subs
                .iter()
                .filter(|s| s.order_id == order_id && s.kind == SubmitKind::Duplicate)
                .count(),
        )
        .unwrap_or(u32::MAX)
        .saturating_add(1);
        let request_id = Self::next(&mut self.data.next_request);
        let cert_id = Self::next(&mut self.data.next_cert);
        self.data.subs.push(Submission {
            request_id,
            cert_id,
            order_id,
            kind,
            new,
            created: now_s(),
            approve_at,
            issue_at: None,
            status: SubStatus::Pending,
            awaiting_dcv,
            cert_faults,
            sub_id,
            processor_comment: None,
        });
        self.dirty = true;
        self.tick();
        self.data.subs.len() - 1
    }

    /// Moves every submission forward to where the clock says it is.
    pub(in crate::sandbox) fn tick(&mut self) {
        let now = now_ms();
        for i in 0..self.data.subs.len() {
            let sub = &self.data.subs[i];
            match sub.status {
                SubStatus::Issued | SubStatus::Rejected => continue,
                SubStatus::Pending if now >= sub.approve_at => {
                    self.data.subs[i].status = SubStatus::Approved;
                    self.dirty = true;
                }
                _ => {}
            }
            let sub = &self.data.subs[i];
            if sub.status == SubStatus::Approved && !sub.awaiting_dcv {
                let issue_at = *self.data.subs[i]
                    .issue_at
                    .get_or_insert(now.saturating_add(ms(self.cfg.issuance_delay)));
                if now >= issue_at {
                    if let Err(e) = self.issue(i) {
                        tracing::error!(error = %e, "sandbox could not sign a certificate");
                        self.data.subs[i].status = SubStatus::Rejected;
                    }
                    self.dirty = true;
                }
            }
        }
    }

    fn issue(&mut self, i: usize) -> anyhow::Result<()> {
        let now = now_s();
        let sub = &self.data.subs[i];
        let faults = &sub.cert_faults;
        let order = self
            .data
            .orders
            .get(&sub.order_id)
            .ok_or_else(|| anyhow::anyhow!("no order {}", sub.order_id))?;
        let other_key;
        let spki: &[u8] = if faults.contains(&FaultKind::WrongKey) {
            other_key = rcgen::PublicKeyData::subject_public_key_info(
                &rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?,
            );
            &other_key
        } else {
            &sub.new.spki
        };
        let mut names = sub.new.dns_names.clone();
        if faults.contains(&FaultKind::MissingName) && names.len() > 1 {
            names.pop();
        }
        let order_end = order_end(&order.valid_till);
        let (not_before, not_after) = if faults.contains(&FaultKind::Expired) {
            (now - 7200, now - 3600)
        } else {
            let end = match sub.kind {
                // A duplicate takes the order's current certificate's expiry (§2.2).
                SubmitKind::Duplicate => self
                    .data
                    .certs
                    .get(&order.current_cert)
                    .map_or(now, |c| c.not_after)
                    .max(now + 60),
                // `cert_validity` is honoured on Multi-year Plan reissues only; it is ignored
                // otherwise (the reissue page: "ignored for reissues that are not associated
                // with a Multi-year Plan").
                SubmitKind::Reissue | SubmitKind::New => {
                    let default = i64::try_from(self.cfg.validity.as_secs()).unwrap_or(i64::MAX);
                    let days = sub
                        .new
                        .validity_days
                        .filter(|_| order.multi_year_plan && sub.kind == SubmitKind::Reissue)
                        .and_then(|d| i64::try_from(d).ok())
                        .map_or(default, |d| d.saturating_mul(86_400));
                    now.saturating_add(days)
                }
            };
            // Nothing outlives the plan (certcentral-api.md §7).
            (now - 5, end.min(order_end))
        };
        let leaf = self.ca.issue(&LeafSpec {
            spki_der: spki,
            common_name: &sub.new.common_name,
            dns_names: &names,
            not_before,
            not_after,
            rogue: faults.contains(&FaultKind::BadChain),
        })?;
        let cert = Cert {
            id: sub.cert_id,
            order_id: sub.order_id,
            serial: leaf.serial,
            der: leaf.der,
            common_name: sub.new.common_name.clone(),
            dns_names: sub.new.dns_names.clone(),
            not_before,
            not_after,
            created: sub.created,
            csr: sub.new.csr_pem.clone(),
            truncated: faults.contains(&FaultKind::TruncatedPem),
            server_platform: sub.new.server_platform,
            signature_hash: sub.new.signature_hash.clone(),
            status: "issued".into(),
        };
        let (kind, order_id, cert_id) = (sub.kind, sub.order_id, sub.cert_id);
        self.data.certs.insert(cert_id, cert);
        self.data.subs[i].status = SubStatus::Issued;
        if let Some(o) = self.data.orders.get_mut(&order_id) {
            if matches!(kind, SubmitKind::Reissue | SubmitKind::New) {
                o.current_cert = cert_id;
                o.status = "issued".into();
            }
            // DV: no reuse, the next issuance validates again.
            if o.dv {
                for d in &mut o.domains {
                    d.validated_until = 0;
                }
            }
        }
        Ok(())
    }
}
