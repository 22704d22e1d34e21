//! The flame graph of a process's growth sites, drawn with egui's painter: an icicle (the
//! outermost frame on top, what it called below), each frame as wide as the bytes grown under
//! it. Hover a frame for its full name, file:line, bytes and share; click it to zoom into it;
//! click a bar above it (or "whole graph") to back out.
//!
//! The tree is built once per reply, off the UI thread; a frame draws only the rectangles at
//! least a pixel wide, so its cost does not grow with the number of stacks.

use std::collections::HashMap;

use egui::{Color32, FontId, Rect, Sense, Stroke, StrokeKind, pos2, vec2};
use memtools::analysis::format;
use memtools::sites::{Site, is_runtime};

/// One frame of the graph: every stack through the same frames up to here, summed.
#[derive(Clone, Debug)]
pub struct Node {
    /// The function (or module+offset, or address) as reports name it.
    pub name: String,
    /// `file:line`, when the module had debug information.
    pub location: Option<String>,
    /// The file the code was mapped from.
    pub module: Option<String>,
    /// The C library, allocator or a runtime rather than the program's own code.
    pub runtime: bool,
    pub bytes: u64,
    pub samples: u64,
    pub parent: Option<usize>,
    /// Largest first.
    pub children: Vec<usize>,
    /// The deepest stack below it, in frames.
    pub height: usize,
}

/// The merged stacks of one process in one window. Node 0 is the root, "all".
#[derive(Clone, Debug)]
pub struct Tree {
    nodes: Vec<Node>,
}

impl Tree {
    /// Merges `sites` (stacks innermost first) outermost first, as flame graphs do.
    pub fn of(sites: &[Site]) -> Tree {
        let mut nodes = vec![Node {
            name: "all".into(),
            location: None,
            module: None,
            runtime: false,
            bytes: 0,
            samples: 0,
            parent: None,
            children: Vec::new(),
            height: 0,
        }];
        // Frames merge by name under the same parent, as in every flame graph: `main` calling
        // two functions from two lines is one `main`.
        let mut index: HashMap<(usize, String), usize> = HashMap::new();
        for site in sites {
            nodes[0].bytes += site.bytes;
            nodes[0].samples += site.samples;
            let mut at = 0;
            for frame in site.stack.iter().rev() {
                let key = (at, frame.label());
                let location = frame.location();
                let next = match index.get(&key) {
                    Some(&i) => {
                        if nodes[i].location != location {
                            // Several lines of one function: its file alone.
                            nodes[i].location = frame.file.as_deref().map(|f| base(f).to_string());
                        }
                        i
                    }
                    None => {
                        let i = nodes.len();
                        nodes.push(Node {
                            name: key.1.clone(),
                            location,
                            module: frame.module.clone(),
                            runtime: is_runtime(frame),
                            bytes: 0,
                            samples: 0,
                            parent: Some(at),
                            children: Vec::new(),
                            height: 0,
                        });
                        nodes[at].children.push(i);
                        index.insert(key, i);
                        i
                    }
                };
                nodes[next].bytes += site.bytes;
                nodes[next].samples += site.samples;
                at = next;
            }
        }
        let weights: Vec<(u64, String)> = nodes.iter().map(|n| (n.bytes, n.name.clone())).collect();
        for n in &mut nodes {
            n.children.sort_by(|&a, &b| {
                weights[b]
                    .0
                    .cmp(&weights[a].0)
                    .then(weights[a].1.cmp(&weights[b].1))
            });
        }
        // A child always comes after its parent: one pass from the end gives every height.
        for i in (1..nodes.len()).rev() {
            if let Some(p) = nodes[i].parent {
                nodes[p].height = nodes[p].height.max(nodes[i].height + 1);
            }
        }
        Tree { nodes }
    }

    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    /// Node `i`'s ancestors, the root first, without `i`.
    fn ancestors(&self, i: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut at = self.nodes[i].parent;
        while let Some(p) = at {
            out.push(p);
            at = self.nodes[p].parent;
        }
        out.reverse();
        out
    }

    /// The path of names from the root to `i`, to find the same frame in another tree.
    fn path(&self, i: usize) -> Vec<String> {
        let mut names: Vec<String> = self
            .ancestors(i)
            .into_iter()
            .skip(1)
            .map(|a| self.nodes[a].name.clone())
            .collect();
        if i != 0 {
            names.push(self.nodes[i].name.clone());
        }
        names
    }

    /// The node at the end of `path`, as far as this tree has it.
    fn find(&self, path: &[String]) -> usize {
        let mut at = 0;
        for name in path {
            match self.nodes[at]
                .children
                .iter()
                .find(|&&c| &self.nodes[c].name == name)
            {
                Some(&c) => at = c,
                None => break,
            }
        }
        at
    }
}

/// Where the graph is zoomed: the path of frame names from the root, so the zoom holds when
/// the range changes and the tree is rebuilt.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FlameState {
    pub zoom: Vec<String>,
}

/// One rectangle drawn in the last frame (tests and the screenshot check look at them).
#[derive(Clone, Debug)]
pub struct FlameRect {
    pub name: String,
    pub rect: Rect,
    pub bytes: u64,
    /// An ancestor of the zoomed frame, drawn full width above it.
    pub ancestor: bool,
}

/// What the last frame drew.
#[derive(Clone, Debug, Default)]
pub struct Drawn {
    /// The frame the graph is zoomed into and its rectangle's width, the whole graph's scale.
    pub zoomed: String,
    pub width: f32,
    pub rects: Vec<FlameRect>,
}

impl Drawn {
    /// The rectangles of frames named `name` (a function may appear under several callers).
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a FlameRect> + 'a {
        self.rects
            .iter()
            .filter(move |r| r.name == name && !r.ancestor)
    }
}

const ROW: f32 = 18.0;
/// Narrower frames are not drawn (their bytes are in their parent's width).
const MIN_WIDTH: f32 = 1.0;

/// Draws the graph into the width available; returns what was drawn.
pub fn show(ui: &mut egui::Ui, tree: &Tree, state: &mut FlameState) -> Drawn {
    let zoom = tree.find(&state.zoom);
    let ancestors = tree.ancestors(zoom);
    let rows = ancestors.len() + 1 + tree.node(zoom).height;
    let width = ui.available_width().max(50.0);
    let (area, _) = ui.allocate_exact_size(vec2(width, rows as f32 * ROW), Sense::hover());
    let total = tree.node(0).bytes;
    let mut drawn = Drawn {
        zoomed: tree.node(zoom).name.clone(),
        width,
        rects: Vec::new(),
    };
    let mut clicked = None;
    let mut frame = |ui: &mut egui::Ui, i: usize, rect: Rect, ancestor: bool| {
        if frame_rect(ui, tree, i, rect, ancestor, total) {
            clicked = Some(i);
        }
        drawn.rects.push(FlameRect {
            name: tree.node(i).name.clone(),
            rect,
            bytes: tree.node(i).bytes,
            ancestor,
        });
    };
    for (row, &a) in ancestors.iter().enumerate() {
        let rect = Rect::from_min_size(
            pos2(area.left(), area.top() + row as f32 * ROW),
            vec2(width, ROW),
        );
        frame(ui, a, rect, true);
    }
    // Breadth by rows: (node, left, width, row).
    let mut todo = vec![(zoom, area.left(), width, ancestors.len())];
    while let Some((i, x, w, row)) = todo.pop() {
        let rect = Rect::from_min_size(pos2(x, area.top() + row as f32 * ROW), vec2(w, ROW));
        frame(ui, i, rect, false);
        let node = tree.node(i);
        let mut left = x;
        for &c in &node.children {
            let cw = if node.bytes == 0 {
                0.0
            } else {
                (tree.node(c).bytes as f64 / node.bytes as f64 * f64::from(w)) as f32
            };
            if cw >= MIN_WIDTH {
                todo.push((c, left, cw, row + 1));
            }
            left += cw;
        }
    }
    if let Some(i) = clicked {
        state.zoom = tree.path(i);
    }
    drawn
}

/// One frame's rectangle, its name inside when it fits, its details on hover. True when
/// clicked.
fn frame_rect(
    ui: &mut egui::Ui,
    tree: &Tree,
    i: usize,
    rect: Rect,
    ancestor: bool,
    total: u64,
) -> bool {
    let node = tree.node(i);
    let response = ui.interact(rect, ui.make_persistent_id(("flame", i)), Sense::click());
    let label = format!("{} {}", node.name, share_text(node.bytes, total));
    response.widget_info(|| egui::WidgetInfo::labeled(egui::accesskit::Role::Button, true, &label));
    let mut fill = color_of(node, i == 0);
    if ancestor {
        fill = fill.gamma_multiply(0.55);
    }
    if response.hovered() {
        fill = fill.gamma_multiply(1.2);
    }
    let painter = ui.painter().with_clip_rect(rect.intersect(ui.clip_rect()));
    painter.rect_filled(rect.shrink(0.5), 2.0, fill);
    if response.hovered() {
        painter.rect_stroke(
            rect.shrink(0.5),
            2.0,
            Stroke::new(1.0, Color32::BLACK),
            StrokeKind::Inside,
        );
    }
    if rect.width() > 24.0 {
        painter.text(
            rect.left_center() + vec2(4.0, 0.0),
            egui::Align2::LEFT_CENTER,
            &node.name,
            FontId::proportional(12.0),
            Color32::from_gray(20),
        );
    }
    let clicked = response.clicked();
    response.on_hover_ui(|ui| {
        ui.label(egui::RichText::new(&node.name).strong());
        if let Some(l) = &node.location {
            ui.label(l);
        }
        if let Some(m) = &node.module {
            ui.weak(m);
        }
        ui.label(format!(
            "{}, {} of the growth in this range; {} samples",
            format::bytes(node.bytes as f64),
            share_text(node.bytes, total),
            node.samples
        ));
        ui.weak(if ancestor {
            "click to back out to it"
        } else {
            "click to zoom into it"
        });
    });
    clicked
}

fn base(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// "92 %": a share of the whole graph.
pub fn share_text(bytes: u64, total: u64) -> String {
    if total == 0 {
        return "0 %".into();
    }
    let share = bytes as f64 / total as f64 * 100.0;
    if share < 1.0 && bytes > 0 {
        format!("{share:.1} %")
    } else {
        format!("{share:.0} %")
    }
}

/// Warm colours for the program's own code (the hue from the name, so a function keeps its
/// colour), blue-grey for the C library, allocator and runtimes beneath it.
fn color_of(node: &Node, root: bool) -> Color32 {
    if root {
        return Color32::from_gray(190);
    }
    let h = node.name.bytes().fold(2166136261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16777619)
    });
    let v = (h % 100) as u8;
    if node.runtime {
        Color32::from_rgb(140 + v / 4, 160 + v / 4, 200 + v / 3)
    } else {
        Color32::from_rgb(230 + v / 4, 90 + v, 40 + v / 3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use memtools::sites::Frame;

    fn f(name: &str) -> Frame {
        Frame {
            function: Some(name.into()),
            ..Frame::default()
        }
    }

    fn site(names: &[&str], bytes: u64) -> Site {
        Site {
            stack: names.iter().rev().map(|n| f(n)).collect(),
            cause: memtools::sites::SiteCause::Fault,
            samples: 1,
            bytes,
        }
    }

    #[test]
    fn stacks_merge_outermost_first_and_widths_are_bytes() {
        let sites = [
            site(&["main", "grow_cache", "memset"], 90),
            site(&["main", "churn"], 10),
            site(&["main", "grow_cache"], 5),
        ];
        let t = Tree::of(&sites);
        assert_eq!(t.node(0).bytes, 105);
        assert_eq!(t.node(0).children.len(), 1);
        let main = t.node(0).children[0];
        assert_eq!(
            (t.node(main).name.as_str(), t.node(main).bytes),
            ("main", 105)
        );
        let kids: Vec<(&str, u64)> = t
            .node(main)
            .children
            .iter()
            .map(|&c| (t.node(c).name.as_str(), t.node(c).bytes))
            .collect();
        assert_eq!(kids, [("grow_cache", 95), ("churn", 10)]);
        assert_eq!(t.node(0).height, 3);
        let grow = t.node(main).children[0];
        assert_eq!(t.path(grow), ["main", "grow_cache"]);
        assert_eq!(t.find(&t.path(grow)), grow);
        assert_eq!(t.find(&["main".into(), "gone".into()]), main);
    }
}
