//! The Play Tennis table (Mitchell, *Machine Learning*, 1997, table 3.2), figure 3.1 of the
//! report: 14 days described by four weather attributes and whether tennis was played.

use std::fmt;

/// A categorical attribute: a fixed, ordered list of values.
pub trait Categorical: Copy + Sized + 'static {
    /// The attribute's name as in the table's header.
    const NAME: &'static str;
    /// Every value, in index order.
    const ALL: &'static [Self];
    /// The value's name as printed in the table.
    fn label(self) -> &'static str;
    /// Position in [`Categorical::ALL`].
    fn index(self) -> usize;
}

macro_rules! categorical {
    ($ty:ident, $name:literal, [$($var:ident),+]) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $ty { $($var),+ }
        impl Categorical for $ty {
            const NAME: &'static str = $name;
            const ALL: &'static [Self] = &[$($ty::$var),+];
            fn label(self) -> &'static str {
                match self { $($ty::$var => stringify!($var)),+ }
            }
            fn index(self) -> usize { self as usize }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.label()) }
        }
    };
}

categorical!(Outlook, "Outlook", [Sunny, Overcast, Rain]);
categorical!(Temperature, "Temperature", [Hot, Mild, Cool]);
categorical!(Humidity, "Humidity", [High, Normal]);
categorical!(Wind, "Wind", [Weak, Strong]);
categorical!(Play, "Play Tennis", [No, Yes]);

/// One day of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Day {
    pub outlook: Outlook,
    pub temperature: Temperature,
    pub humidity: Humidity,
    pub wind: Wind,
    pub play: Play,
}

impl Day {
    /// The four weather attributes as indices, in table order.
    pub fn features(&self) -> [usize; 4] {
        [
            self.outlook.index(),
            self.temperature.index(),
            self.humidity.index(),
            self.wind.index(),
        ]
    }

    /// Builds a day from feature indices (each in range) and a label index.
    pub fn from_indices(f: [usize; 4], play: usize) -> Day {
        Day {
            outlook: Outlook::ALL[f[0]],
            temperature: Temperature::ALL[f[1]],
            humidity: Humidity::ALL[f[2]],
            wind: Wind::ALL[f[3]],
            play: Play::ALL[play],
        }
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<8} {:<5} {:<6} {:<6} {}",
            self.outlook, self.temperature, self.humidity, self.wind, self.play
        )
    }
}

/// Number of values of each weather attribute: 3, 3, 2, 2.
pub const CARDINALITIES: [usize; 4] = [3, 3, 2, 2];

/// The attributes' names, in table order.
pub const FEATURE_NAMES: [&str; 4] = ["Outlook", "Temperature", "Humidity", "Wind"];

/// The 14 days, in the order of the report's figure 3.1.
pub fn table() -> Vec<Day> {
    use Humidity::*;
    use Outlook::*;
    use Play::*;
    use Temperature::*;
    use Wind::*;
    let rows = [
        (Sunny, Hot, High, Weak, No),
        (Sunny, Hot, High, Strong, No),
        (Overcast, Hot, High, Weak, Yes),
        (Rain, Mild, High, Weak, Yes),
        (Rain, Cool, Normal, Weak, Yes),
        (Rain, Cool, Normal, Strong, No),
        (Overcast, Cool, Normal, Strong, Yes),
        (Sunny, Mild, High, Weak, No),
        (Sunny, Cool, Normal, Weak, Yes),
        (Rain, Mild, Normal, Weak, Yes),
        (Sunny, Mild, Normal, Strong, Yes),
        (Overcast, Mild, High, Strong, Yes),
        (Overcast, Hot, Normal, Weak, Yes),
        (Rain, Mild, High, Strong, No),
    ];
    rows.iter()
        .map(|&(outlook, temperature, humidity, wind, play)| Day {
            outlook,
            temperature,
            humidity,
            wind,
            play,
        })
        .collect()
}

/// Categorical features with possible missing values (`None`), and class labels: the form
/// the categorical naive Bayes model fits.
#[derive(Debug, Clone, PartialEq)]
pub struct CategoricalTable {
    pub feature_names: Vec<String>,
    pub cardinalities: Vec<usize>,
    pub rows: Vec<Vec<Option<usize>>>,
    pub labels: Vec<usize>,
    pub class_names: Vec<String>,
}

/// The table as categorical features with Play Tennis as the class.
pub fn categorical() -> CategoricalTable {
    let days = table();
    CategoricalTable {
        feature_names: FEATURE_NAMES.iter().map(|s| s.to_string()).collect(),
        cardinalities: CARDINALITIES.to_vec(),
        rows: days
            .iter()
            .map(|d| d.features().iter().map(|&v| Some(v)).collect())
            .collect(),
        labels: days.iter().map(|d| d.play.index()).collect(),
        class_names: Play::ALL.iter().map(|p| p.label().to_string()).collect(),
    }
}
