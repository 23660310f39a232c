//! VGA registers (0x3b0-0x3df): the CRTC (index 0x3d4/0x3b4, data 0x3d5/0x3b5) with each
//! register by name and the text cursor's position, the sequencer, graphics controller, attribute
//! controller, DAC, miscellaneous output and input status registers.

use super::{Access, Explanation};

/// The index registers' values, and the cursor's high byte.
#[derive(Debug, Default, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Vga {
    crtc: Option<u8>,
    sequencer: Option<u8>,
    graphics: Option<u8>,
    cursor_high: u8,
}

fn crtc_name(i: u8) -> &'static str {
    match i {
        0x00 => "HORIZONTAL_TOTAL",
        0x01 => "HORIZONTAL_DISPLAY_END",
        0x02 => "START_HORIZONTAL_BLANK",
        0x03 => "END_HORIZONTAL_BLANK",
        0x04 => "START_HORIZONTAL_RETRACE",
        0x05 => "END_HORIZONTAL_RETRACE",
        0x06 => "VERTICAL_TOTAL",
        0x07 => "OVERFLOW",
        0x08 => "PRESET_ROW_SCAN",
        0x09 => "MAXIMUM_SCAN_LINE",
        0x0a => "CURSOR_START",
        0x0b => "CURSOR_END",
        0x0c => "START_ADDRESS_HIGH",
        0x0d => "START_ADDRESS_LOW",
        0x0e => "CURSOR_LOCATION_HIGH",
        0x0f => "CURSOR_LOCATION_LOW",
        0x10 => "VERTICAL_RETRACE_START",
        0x11 => "VERTICAL_RETRACE_END",
        0x12 => "VERTICAL_DISPLAY_END",
        0x13 => "OFFSET",
        0x14 => "UNDERLINE_LOCATION",
        0x15 => "START_VERTICAL_BLANK",
        0x16 => "END_VERTICAL_BLANK",
        0x17 => "MODE_CONTROL",
        0x18 => "LINE_COMPARE",
        _ => "CRTC_EXTENSION",
    }
}

impl Vga {
    pub fn explain(&mut self, a: &Access) -> Explanation {
        let device = "VGA";
        let v = a.value as u8;
        let e = |reg: &str, what: String| Explanation::new(device, reg, a, what);
        match a.at {
            0x3d4 | 0x3b4 => {
                if a.write {
                    self.crtc = Some(v);
                }
                e("CRTC_INDEX", format!("select {}", crtc_name(v)))
            }
            0x3d5 | 0x3b5 => match self.crtc {
                Some(i) => {
                    let what = match i {
                        0x0e => {
                            if a.write {
                                self.cursor_high = v;
                            }
                            "the text cursor's position, high byte".to_string()
                        }
                        0x0f => {
                            let pos = (self.cursor_high as u32) << 8 | v as u32;
                            format!("the text cursor at row {}, column {} (80 columns)", pos / 80, pos % 80)
                        }
                        0x0a if v & 0x20 != 0 => "the text cursor off".to_string(),
                        _ => String::new(),
                    };
                    e(crtc_name(i), what).with_state(format!("CRTC index {i:#04x} latched"))
                }
                None => e("CRTC_DATA", "no CRTC index written yet".into()),
            },
            0x3c4 => {
                if a.write {
                    self.sequencer = Some(v);
                }
                e("SEQ_INDEX", format!("select sequencer register {v}"))
            }
            0x3c5 => {
                e("SEQ_DATA", format!("sequencer register {}", self.sequencer.map_or("?".into(), |i| i.to_string())))
            }
            0x3ce => {
                if a.write {
                    self.graphics = Some(v);
                }
                e("GC_INDEX", format!("select graphics controller register {v}"))
            }
            0x3cf => e(
                "GC_DATA",
                format!("graphics controller register {}", self.graphics.map_or("?".into(), |i| i.to_string())),
            ),
            0x3c0 => e("ATTR_INDEX_DATA", "attribute controller index or data (a flip-flop)".into()),
            0x3c1 => e("ATTR_DATA", "attribute controller data".into()),
            0x3c2 if a.write => e(
                "MISC_OUTPUT",
                if v & 1 != 0 { "colour (CRTC at 0x3d4)".into() } else { "mono (CRTC at 0x3b4)".into() },
            ),
            0x3c2 => e("INPUT_STATUS_0", String::new()),
            0x3cc => e("MISC_OUTPUT", "read back".into()),
            0x3c3 => e("VGA_ENABLE", String::new()),
            0x3c6 => e("DAC_PIXEL_MASK", String::new()),
            0x3c7 => e(if a.write { "DAC_READ_INDEX" } else { "DAC_STATE" }, String::new()),
            0x3c8 => e("DAC_WRITE_INDEX", format!("palette entry {v}")),
            0x3c9 => e("DAC_DATA", "a palette colour component".into()),
            0x3da | 0x3ba if !a.write => {
                let what = match (v & 1 != 0, v & 8 != 0) {
                    (_, true) => "in vertical retrace",
                    (true, false) => "in a blanking interval",
                    _ => "displaying",
                };
                e("INPUT_STATUS_1", what.into())
            }
            0x3da | 0x3ba => e("FEATURE_CONTROL", String::new()),
            _ => e("", "a VGA register".into()),
        }
    }
}

crate::whole_state_family!(Vga);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::tests::{inp, out};

    #[test]
    fn crtc_index_data_pairs_and_the_cursor() {
        let mut g = Vga::default();
        assert_eq!(g.explain(&out(0x3d4, 1, 0x0e)).summary, "CRTC_INDEX write 0x0e: select CURSOR_LOCATION_HIGH");
        g.explain(&out(0x3d5, 1, 0x00));
        g.explain(&out(0x3d4, 1, 0x0f));
        assert_eq!(
            g.explain(&out(0x3d5, 1, 0xa0)).summary,
            "CURSOR_LOCATION_LOW write 0xa0: the text cursor at row 2, column 0 (80 columns)"
        );
        assert_eq!(g.explain(&inp(0x3da, 1, 0x09)).register, "INPUT_STATUS_1");
    }
}
