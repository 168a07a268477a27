//! The CertCentral answers the client reads: order info, the reissue/duplicate answer, the
//! reissue and duplicate lists, and the DCV answers (random value, check-dcv, domain info).
#![no_main]

use certkeeper::certcentral::{
    CertificateList, CheckDcv, DcvRandomValue, DomainInfo, OrderInfo, SubmitResponse,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<OrderInfo>(data);
    let _ = serde_json::from_slice::<SubmitResponse>(data);
    let _ = serde_json::from_slice::<CertificateList>(data);
    let _ = serde_json::from_slice::<DcvRandomValue>(data);
    let _ = serde_json::from_slice::<CheckDcv>(data);
    let _ = serde_json::from_slice::<DomainInfo>(data);
});
