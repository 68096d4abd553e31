//! How real customers type: typos, no capitals, no final punctuation,
//! greetings and thanks around the question. Applied to a template before
//! its slots are filled, so order numbers and product names stay intact.

use rand::seq::IndexedRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::phrases::Phrasebook;

/// Chance of one typo in a message (and again of a second).
const TYPO: f64 = 0.15;
/// Chance of writing everything in lower case.
const LOWERCASE: f64 = 0.1;
/// Chance of dropping the final punctuation.
const NO_FINAL_PUNCTUATION: f64 = 0.15;
/// Chance of a greeting before the question.
const OPENER: f64 = 0.3;
/// Chance of thanks after the question.
const CLOSER: f64 = 0.2;

/// `template` as a customer might type it (slots untouched).
pub(crate) fn roughen(template: &str, rng: &mut ChaCha8Rng) -> String {
    let mut text = template.to_owned();
    if rng.random_bool(TYPO) {
        text = typo(&text, rng);
        if rng.random_bool(TYPO) {
            text = typo(&text, rng);
        }
    }
    if rng.random_bool(LOWERCASE) {
        text = text.to_lowercase();
    }
    if rng.random_bool(NO_FINAL_PUNCTUATION) {
        text = text.trim_end_matches(['?', '.', '!']).to_owned();
    }
    text
}

/// Adds a greeting before and/or thanks after a first message.
pub(crate) fn politeness(text: String, book: &Phrasebook, rng: &mut ChaCha8Rng) -> String {
    let mut out = text;
    if rng.random_bool(OPENER) {
        let opener = book.openers.choose(rng).expect("openers are non-empty");
        // After "Hi," the sentence goes on in lower case (but "I" stays).
        if opener.ends_with(',') && !(out.starts_with("I ") || out.starts_with("I'")) {
            let mut chars = out.chars();
            if let Some(first) = chars.next() {
                out = first.to_lowercase().chain(chars).collect();
            }
        }
        out = format!("{opener} {out}");
    }
    if rng.random_bool(CLOSER) {
        let closer = book.closers.choose(rng).expect("closers are non-empty");
        out = format!("{out} {closer}");
    }
    out
}

/// One typo in a word of at least four letters outside a `{slot}`:
/// two neighbouring letters swapped, one dropped or one doubled.
fn typo(text: &str, rng: &mut ChaCha8Rng) -> String {
    let words: Vec<&str> = text.split(' ').collect();
    let candidates: Vec<usize> = words
        .iter()
        .enumerate()
        .filter(|(_, w)| w.chars().filter(|c| c.is_alphabetic()).count() >= 4 && !w.contains('{'))
        .map(|(i, _)| i)
        .collect();
    let Some(&index) = candidates.choose(rng) else {
        return text.to_owned();
    };
    let mut chars: Vec<char> = words[index].chars().collect();
    // Positions of letters that have a letter after them.
    let spots: Vec<usize> = (0..chars.len() - 1)
        .filter(|&i| chars[i].is_alphabetic() && chars[i + 1].is_alphabetic())
        .collect();
    let Some(&at) = spots.choose(rng) else {
        return text.to_owned();
    };
    match rng.random_range(0..3) {
        // Swapping equal letters would change nothing.
        0 if chars[at] != chars[at + 1] => chars.swap(at, at + 1),
        1 => {
            chars.remove(at + 1);
        }
        _ => chars.insert(at, chars[at]),
    }
    let changed: String = chars.into_iter().collect();
    let mut out: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
    out[index] = changed;
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn typos_never_touch_slots_and_change_one_word() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let template = "Could you tell me the status of order {id} please";
        for _ in 0..200 {
            let out = typo(template, &mut rng);
            assert!(out.contains("{id}"), "{out}");
            let differing = out
                .split(' ')
                .zip(template.split(' '))
                .filter(|(a, b)| a != b)
                .count();
            assert_eq!(differing, 1, "{out}");
        }
        assert_eq!(typo("{id}", &mut rng), "{id}");
    }
}
