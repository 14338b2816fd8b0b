//! The spec's pool configuration templates (`config/pool_config_dev.yaml`,
//! `pool_config_prod.yaml`): one section per backend with the pool limits MDM runs with. We read
//! only the limits poolwatch reasons about and ignore MDM's other keys (pragmas, memory_limit…).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::model::PoolLimits;

/// One backend's section of a template, in the spec's key names.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct TemplateSection {
    pub pool_size: Option<u64>,
    pub max_overflow: Option<u64>,
    pub timeout: Option<f64>,
    pub pool_recycle: Option<f64>,
}

impl TemplateSection {
    pub fn limits(&self) -> PoolLimits {
        PoolLimits {
            pool_size: self.pool_size,
            max_overflow: self.max_overflow,
            timeout_seconds: self.timeout,
            recycle_seconds: self.pool_recycle,
            ..PoolLimits::default()
        }
    }
}

/// A whole template file: `sqlite`, `duckdb`, `postgresql` sections.
pub type Template = BTreeMap<String, TemplateSection>;

/// The environment variable the spec's performance script sets to try pool sizes; it overrides
/// the configured pool_size of application pools, as it does in MDM.
pub const POOL_SIZE_ENV: &str = "MDM_POOL_SIZE";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_templates_parse_with_the_spec_values() {
        let root = env!("CARGO_MANIFEST_DIR");
        let prod: Template = serde_saphyr::from_str(
            &std::fs::read_to_string(format!("{root}/config/pool_config_prod.yaml")).unwrap(),
        )
        .unwrap();
        let pg = prod["postgresql"].limits();
        assert_eq!(pg.pool_size, Some(50));
        assert_eq!(pg.max_overflow, Some(25));
        assert_eq!(pg.recycle_seconds, Some(3600.0));
        assert_eq!(prod["sqlite"].timeout, Some(30.0));
        let dev: Template = serde_saphyr::from_str(
            &std::fs::read_to_string(format!("{root}/config/pool_config_dev.yaml")).unwrap(),
        )
        .unwrap();
        assert_eq!(dev["postgresql"].pool_size, Some(10));
        assert_eq!(dev["duckdb"].max_overflow, Some(2));
    }
}
