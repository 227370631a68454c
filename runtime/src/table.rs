//! Tables of named columns (numbers or text), built from vectors, rows or tensors. They show as
//! an HTML table (and aligned text) in Jupyter, and as a Zeppelin table — `%table` text, with
//! Zeppelin's built-in charts — when the kernel runs under Apache Zeppelin
//! ([`torchbook_display::frontend`]). `History`, `Evaluation` and tune results have a
//! `table()` too, and render through it under Zeppelin.
//!
//! ```
//! use torchbook::table::Table;
//! let t = Table::new().column("epoch", vec![1i64, 2])?.column("loss", vec![0.9, 0.4])?;
//! assert_eq!(t.to_tsv(), "epoch\tloss\n1\t0.9\n2\t0.4\n");
//! # Ok::<(), torchbook::Error>(())
//! ```

use crate::error::{Error, Result};
use tch::{Kind, Tensor};
use torchbook_display::{html_escape, Frontend, MimeBundle, Render};

/// One column's values.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    Int(Vec<i64>),
    Float(Vec<f64>),
    Text(Vec<String>),
}

impl Column {
    pub fn len(&self) -> usize {
        match self {
            Column::Int(v) => v.len(),
            Column::Float(v) => v.len(),
            Column::Text(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn cell(&self, row: usize) -> String {
        match self {
            Column::Int(v) => v[row].to_string(),
            Column::Float(v) => format_float(v[row]),
            Column::Text(v) => v[row].clone(),
        }
    }

    fn is_numeric(&self) -> bool {
        !matches!(self, Column::Text(_))
    }
}

macro_rules! column_from {
    ($variant:ident: $($t:ty),*) => {$(
        impl From<Vec<$t>> for Column {
            fn from(values: Vec<$t>) -> Column {
                Column::$variant(values.into_iter().map(Into::into).collect())
            }
        }
        impl From<&[$t]> for Column {
            fn from(values: &[$t]) -> Column {
                Column::$variant(values.iter().cloned().map(Into::into).collect())
            }
        }
    )*};
}
column_from!(Int: i64, i32, u32, i16, u16, i8, u8);
column_from!(Float: f64, f32);
column_from!(Text: String, &str);

impl From<Vec<usize>> for Column {
    fn from(values: Vec<usize>) -> Column {
        Column::Int(values.into_iter().map(|v| v as i64).collect())
    }
}

/// One value of a row, for [`Table::from_rows`].
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Int(i64),
    Float(f64),
    Text(String),
}

macro_rules! cell_from {
    ($variant:ident: $($t:ty),*) => {$(
        impl From<$t> for Cell {
            fn from(value: $t) -> Cell {
                Cell::$variant(value.into())
            }
        }
    )*};
}
cell_from!(Int: i64, i32, u32, i16, u16, i8, u8);
cell_from!(Float: f64, f32);
cell_from!(Text: String, &str);

impl From<usize> for Cell {
    fn from(value: usize) -> Cell {
        Cell::Int(value as i64)
    }
}

/// Named columns of equal length.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    names: Vec<String>,
    columns: Vec<Column>,
}

impl Table {
    pub fn new() -> Table {
        Table::default()
    }

    /// Adds a column; its length must match the columns already there.
    pub fn column(mut self, name: &str, values: impl Into<Column>) -> Result<Table> {
        let values = values.into();
        if let Some(rows) = self.columns.first().map(Column::len) {
            if values.len() != rows {
                return Err(Error::Usage(format!("table column {name:?}: expected {rows} values (the table's rows), found {}", values.len())));
            }
        }
        self.names.push(name.to_owned());
        self.columns.push(values);
        Ok(self)
    }

    /// From rows of cells under `header`. A column of integers stays integers; one that mixes
    /// integers and floats becomes floats; one with any text becomes text.
    pub fn from_rows<R, C>(header: &[&str], rows: impl IntoIterator<Item = R>) -> Result<Table>
    where
        R: IntoIterator<Item = C>,
        C: Into<Cell>,
    {
        let mut cells: Vec<Vec<Cell>> = vec![Vec::new(); header.len()];
        for (index, row) in rows.into_iter().enumerate() {
            let row: Vec<Cell> = row.into_iter().map(Into::into).collect();
            if row.len() != header.len() {
                return Err(Error::Usage(format!("table row {index}: expected {} values (the header's), found {}", header.len(), row.len())));
            }
            for (column, cell) in cells.iter_mut().zip(row) {
                column.push(cell);
            }
        }
        let mut table = Table::new();
        for (name, column) in header.iter().zip(cells) {
            table = table.column(name, column_of(column))?;
        }
        Ok(table)
    }

    /// From a 1-D tensor (one column) or a 2-D `[rows, columns]` tensor, one name per column.
    /// Integer and bool tensors give integer columns, the others floats.
    pub fn from_tensor(tensor: &Tensor, names: &[&str]) -> Result<Table> {
        let size = tensor.size();
        let matrix = match size.len() {
            1 => tensor.unsqueeze(1),
            2 => tensor.shallow_clone(),
            _ => return Err(Error::Shape { context: "Table::from_tensor".into(), expected: "[rows] or [rows, columns]".into(), found: size }),
        };
        let columns = matrix.size()[1];
        if names.len() as i64 != columns {
            return Err(Error::Shape {
                context: format!("Table::from_tensor with {} names", names.len()),
                expected: format!("[rows, {}]", names.len()),
                found: size,
            });
        }
        let integral = matches!(tensor.kind(), Kind::Int64 | Kind::Int | Kind::Int16 | Kind::Int8 | Kind::Uint8 | Kind::Bool);
        let matrix = matrix.to_device(tch::Device::Cpu);
        let mut table = Table::new();
        for (index, name) in names.iter().enumerate() {
            let column = matrix.select(1, index as i64).contiguous();
            table = if integral {
                table.column(name, Vec::<i64>::try_from(&column.to_kind(Kind::Int64))?)?
            } else {
                table.column(name, Vec::<f64>::try_from(&column.to_kind(Kind::Double))?)?
            };
        }
        Ok(table)
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn get(&self, name: &str) -> Option<&Column> {
        self.names.iter().position(|n| n == name).map(|i| &self.columns[i])
    }

    /// The first `n` rows (all of them when there are fewer), as pandas' `head`.
    pub fn head(&self, n: usize) -> Table {
        let columns = self
            .columns
            .iter()
            .map(|c| match c {
                Column::Int(v) => Column::Int(v.iter().take(n).copied().collect()),
                Column::Float(v) => Column::Float(v.iter().take(n).copied().collect()),
                Column::Text(v) => Column::Text(v.iter().take(n).cloned().collect()),
            })
            .collect();
        Table { names: self.names.clone(), columns }
    }

    pub fn num_rows(&self) -> usize {
        self.columns.first().map_or(0, Column::len)
    }

    /// Tab-separated, header first: what Zeppelin's `%table` reads. Tabs and line breaks inside
    /// text become spaces, since they would split cells and rows.
    pub fn to_tsv(&self) -> String {
        let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
        let mut out = self.names.iter().map(|n| clean(n)).collect::<Vec<_>>().join("\t");
        out.push('\n');
        for row in 0..self.num_rows() {
            out.push_str(&self.columns.iter().map(|c| clean(&c.cell(row))).collect::<Vec<_>>().join("\t"));
            out.push('\n');
        }
        out
    }

    /// An HTML `<table>`, numbers right-aligned.
    pub fn to_html(&self) -> String {
        let mut html = String::from("<table><thead><tr>");
        for name in &self.names {
            html.push_str(&format!("<th>{}</th>", html_escape(name)));
        }
        html.push_str("</tr></thead><tbody>");
        for row in 0..self.num_rows() {
            html.push_str("<tr>");
            for column in &self.columns {
                let align = if column.is_numeric() { " style=\"text-align:right\"" } else { "" };
                html.push_str(&format!("<td{align}>{}</td>", html_escape(&column.cell(row))));
            }
            html.push_str("</tr>");
        }
        html.push_str("</tbody></table>");
        html
    }

    /// Aligned text columns.
    pub fn to_text(&self) -> String {
        let rows = self.num_rows();
        let widths: Vec<usize> = self
            .names
            .iter()
            .zip(&self.columns)
            .map(|(name, column)| (0..rows).map(|r| column.cell(r).chars().count()).chain([name.chars().count()]).max().unwrap_or(0))
            .collect();
        let line = |cells: Vec<String>| {
            cells
                .iter()
                .zip(&widths)
                .zip(&self.columns)
                .map(|((cell, width), column)| if column.is_numeric() { format!("{cell:>width$}") } else { format!("{cell:<width$}") })
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        };
        let mut out = line(self.names.clone());
        for row in 0..rows {
            out.push('\n');
            out.push_str(&line(self.columns.iter().map(|c| c.cell(row)).collect()));
        }
        out
    }

    /// What Zeppelin shows as a table: `%table` and the TSV.
    pub fn zeppelin_bundle(&self) -> MimeBundle {
        MimeBundle::text(format!("%table {}", self.to_tsv()))
    }
}

impl Render for Table {
    fn render(&self) -> MimeBundle {
        match torchbook_display::frontend() {
            Frontend::Zeppelin => self.zeppelin_bundle(),
            Frontend::Jupyter => MimeBundle::text(self.to_text()).with("text/html", self.to_html()),
        }
    }
}

fn column_of(cells: Vec<Cell>) -> Column {
    if cells.iter().all(|c| matches!(c, Cell::Int(_))) {
        Column::Int(cells.into_iter().map(|c| if let Cell::Int(i) = c { i } else { unreachable!() }).collect())
    } else if cells.iter().all(|c| !matches!(c, Cell::Text(_))) {
        Column::Float(cells.into_iter().map(|c| match c { Cell::Int(i) => i as f64, Cell::Float(f) => f, Cell::Text(_) => unreachable!() }).collect())
    } else {
        Column::Text(cells.into_iter().map(|c| match c { Cell::Int(i) => i.to_string(), Cell::Float(f) => format_float(f), Cell::Text(s) => s }).collect())
    }
}

/// Up to six significant digits, without trailing zeros; exponent form when very large or small.
fn format_float(value: f64) -> String {
    if !value.is_finite() || value == 0.0 {
        return format!("{value}");
    }
    let magnitude = value.abs();
    if !(1e-4..1e9).contains(&magnitude) {
        return format!("{value:.4e}");
    }
    let decimals = (5 - magnitude.log10().floor() as i32).max(0) as usize;
    let text = format!("{value:.decimals$}");
    if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.').to_owned() } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_rows_and_tensors() {
        let t = Table::new().column("name", vec!["a", "b\tc"]).unwrap().column("score", vec![0.5f32, 1.25]).unwrap();
        assert_eq!(t.to_tsv(), "name\tscore\na\t0.5\nb c\t1.25\n");
        assert_eq!(t.to_text(), "name  score\na       0.5\nb\tc    1.25");
        assert!(t.to_html().contains("<td style=\"text-align:right\">1.25</td>"));
        let err = Table::new().column("a", vec![1i64]).unwrap().column("b", vec![1i64, 2]).unwrap_err().to_string();
        assert_eq!(err, "table column \"b\": expected 1 values (the table's rows), found 2");

        let rows = Table::from_rows(&["k", "n", "x"], vec![vec![Cell::from("p"), 1.into(), 2.into()], vec!["q".into(), 3.into(), 0.5.into()]]).unwrap();
        assert_eq!(rows.get("n"), Some(&Column::Int(vec![1, 3])));
        assert_eq!(rows.get("x"), Some(&Column::Float(vec![2.0, 0.5])));
        assert!(Table::from_rows(&["a", "b"], vec![vec![1i64]]).is_err());

        let m = Tensor::from_slice(&[1i64, 2, 3, 4, 5, 6]).view([3, 2]);
        let t = Table::from_tensor(&m, &["x", "y"]).unwrap();
        assert_eq!((t.num_rows(), t.get("y")), (3, Some(&Column::Int(vec![2, 4, 6]))));
        let v = Table::from_tensor(&Tensor::from_slice(&[0.25f32, 0.5]), &["p"]).unwrap();
        assert_eq!(v.get("p"), Some(&Column::Float(vec![0.25, 0.5])));
        assert_eq!(t.head(2).num_rows(), 2);
        assert_eq!(t.head(2).get("y"), Some(&Column::Int(vec![2, 4])));
        assert_eq!(t.head(10), t);
        let wrong = Table::from_tensor(&m, &["x"]).unwrap_err().to_string();
        assert_eq!(wrong, "Table::from_tensor with 1 names: expected shape [rows, 1], found [3, 2]");
        assert!(Table::from_tensor(&Tensor::zeros([2, 2, 2], (Kind::Float, tch::Device::Cpu)), &["a"]).is_err());
    }

    #[test]
    fn floats_are_short() {
        assert_eq!(format_float(0.123456789), "0.123457");
        assert_eq!(format_float(1234.5), "1234.5");
        assert_eq!(format_float(2.0), "2");
        assert_eq!(format_float(1e-7), "1.0000e-7");
        assert_eq!(format_float(f64::NAN), "NaN");
    }
}
