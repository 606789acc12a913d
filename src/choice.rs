//! Settings that take one of a few names (`herd.durability`,
//! `herd.forwarding`, `herd.log_format`, `places.provider`): each is an enum
//! read through its name, so that a wrong name is refused, naming the right
//! ones, in one wording; and written back as the same name. A module of its
//! own: the settings, the logging and the journal each declare one, and none
//! of them imports another for it.

/// A name that is none of a setting's choices.
#[derive(Debug, thiserror::Error)]
#[error("{what} {name:?} is not {}", known(.labels))]
pub struct UnknownChoice {
    what: &'static str,
    name: String,
    labels: Vec<&'static str>,
}

/// `a or b`, or `one of a, b, c`.
fn known(labels: &[&'static str]) -> String {
    match labels {
        [a, b] => format!("{a} or {b}"),
        _ => format!("one of {}", labels.join(", ")),
    }
}

/// The choice of `all` whose label is `name`.
pub fn find<T: Copy>(
    what: &'static str,
    all: &[T],
    label: fn(T) -> &'static str,
    name: String,
) -> Result<T, UnknownChoice> {
    all.iter()
        .copied()
        .find(|c| label(*c) == name)
        .ok_or_else(|| UnknownChoice {
            what,
            name,
            labels: all.iter().map(|c| label(*c)).collect(),
        })
}

/// Declares a setting's enum: its variants with their names, `ALL`,
/// `label()`, and reading and writing it through the name.
macro_rules! choice {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident ($what:literal) {
            $($(#[$vmeta:meta])* $variant:ident = $label:literal),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
        #[serde(try_from = "String", into = "&'static str")]
        $vis enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name the settings use.
            pub fn label(self) -> &'static str {
                match self {
                    $($name::$variant => $label),+
                }
            }
        }

        impl From<$name> for &'static str {
            fn from(choice: $name) -> &'static str {
                choice.label()
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::choice::UnknownChoice;

            fn try_from(name: String) -> Result<$name, Self::Error> {
                $crate::choice::find($what, $name::ALL, $name::label, name)
            }
        }
    };
}
pub(crate) use choice;

#[cfg(test)]
mod tests {
    choice! {
        enum Colour ("colour") { Red = "red", Dark = "dark-blue" }
    }
    choice! {
        enum Size ("size") { S = "s", M = "m", L = "l" }
    }

    #[test]
    fn names_are_read_and_written_as_they_are_and_others_refused() {
        for colour in Colour::ALL {
            let name = serde_json::to_value(colour).expect("a name");
            assert_eq!(name, colour.label());
            assert_eq!(serde_json::from_value::<Colour>(name).ok(), Some(*colour));
        }
        let wrong = Colour::try_from("blue".to_string()).unwrap_err();
        assert_eq!(wrong.to_string(), "colour \"blue\" is not red or dark-blue");
        let wrong = Size::try_from("xl".to_string()).unwrap_err();
        assert_eq!(wrong.to_string(), "size \"xl\" is not one of s, m, l");
    }
}
