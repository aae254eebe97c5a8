//! Sizing rules of SPEC.md as pure functions: the tuning tier table and the
//! PgBouncer auto pool size, both chosen by the environment's RAM.

use std::collections::BTreeMap;

use super::Tuning;

/// A concrete tuning tier (what `auto` resolves to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Small,
    Medium,
    Large,
}

impl Tier {
    /// ≤ 2 GB small, ≤ 8 GB medium, above large.
    pub fn for_ram_mb(ram_mb: f64) -> Tier {
        if ram_mb <= 2048.0 {
            Tier::Small
        } else if ram_mb <= 8192.0 {
            Tier::Medium
        } else {
            Tier::Large
        }
    }

    /// The tier's postgresql.conf settings, exactly as SPEC.md's table.
    pub fn settings(self) -> BTreeMap<&'static str, &'static str> {
        let (shared_buffers, effective_cache_size, work_mem, maintenance_work_mem) = match self {
            Tier::Small => ("512MB", "1536MB", "16MB", "128MB"),
            Tier::Medium => ("2GB", "6GB", "64MB", "512MB"),
            Tier::Large => ("4GB", "24GB", "128MB", "1GB"),
        };
        BTreeMap::from([
            ("shared_buffers", shared_buffers),
            ("effective_cache_size", effective_cache_size),
            ("work_mem", work_mem),
            ("maintenance_work_mem", maintenance_work_mem),
            ("max_connections", "100"),
            ("random_page_cost", "1.1"),
        ])
    }
}

/// The tier a `tuning:` value selects; `None` for `tuning: none`. `auto`
/// needs the environment's RAM, which the caller has checked is present.
pub fn tier(tuning: Tuning, ram_mb: Option<f64>) -> Option<Tier> {
    match tuning {
        Tuning::Auto => ram_mb.map(Tier::for_ram_mb),
        Tuning::Small => Some(Tier::Small),
        Tuning::Medium => Some(Tier::Medium),
        Tuning::Large => Some(Tier::Large),
        Tuning::None => None,
    }
}

/// PgBouncer `default_pool_size` for `pool_size: auto`: ≤ 2048 MB → 20,
/// ≤ 4096 → 40, ≤ 8192 → 80, above → 100.
pub fn auto_pool_size(ram_mb: f64) -> u32 {
    if ram_mb <= 2048.0 {
        20
    } else if ram_mb <= 4096.0 {
        40
    } else if ram_mb <= 8192.0 {
        80
    } else {
        100
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tier_boundaries_follow_the_spec() {
        for (ram_mb, tier) in [
            (512.0, Tier::Small),
            (2048.0, Tier::Small),
            (2049.0, Tier::Medium),
            (4096.0, Tier::Medium),
            (8192.0, Tier::Medium),
            (8193.0, Tier::Large),
            (65536.0, Tier::Large),
        ] {
            assert_eq!(Tier::for_ram_mb(ram_mb), tier, "{ram_mb} MB");
        }
    }

    #[test]
    fn tier_table_is_the_spec_table() {
        let table = [
            (Tier::Small, ["512MB", "1536MB", "16MB", "128MB", "100", "1.1"]),
            (Tier::Medium, ["2GB", "6GB", "64MB", "512MB", "100", "1.1"]),
            (Tier::Large, ["4GB", "24GB", "128MB", "1GB", "100", "1.1"]),
        ];
        let names = [
            "shared_buffers",
            "effective_cache_size",
            "work_mem",
            "maintenance_work_mem",
            "max_connections",
            "random_page_cost",
        ];
        for (tier, values) in table {
            let settings = tier.settings();
            assert_eq!(settings.len(), names.len());
            for (name, value) in names.iter().zip(values) {
                assert_eq!(settings[name], value, "{tier:?} {name}");
            }
        }
    }

    #[test]
    fn explicit_tiers_ignore_ram_and_none_has_no_tier() {
        assert_eq!(tier(Tuning::Large, Some(512.0)), Some(Tier::Large));
        assert_eq!(tier(Tuning::Auto, Some(4096.0)), Some(Tier::Medium));
        assert_eq!(tier(Tuning::None, Some(4096.0)), None);
    }

    #[test]
    fn auto_pool_size_follows_the_spec() {
        for (ram_mb, size) in
            [(1024.0, 20), (2048.0, 20), (2049.0, 40), (4096.0, 40), (8192.0, 80), (8193.0, 100), (32768.0, 100)]
        {
            assert_eq!(auto_pool_size(ram_mb), size, "{ram_mb} MB");
        }
    }
}
