//! The layout of every tensor in a PyTorch zip checkpoint (`torch.save`, PyTorch ≥ 1.6): storage,
//! element offset, shape and **strides**. burn-store 0.21 reads each tensor as if it were
//! contiguous and ignores its strides, so a channels_last, transposed or sliced tensor comes back
//! scrambled; [`tensor_layouts`] reads `data.pkl` itself (a small pickle interpreter that knows
//! only what `torch.save` writes) so such tensors can be gathered correctly or refused by name.

use std::collections::HashMap;

/// Where one tensor's values are: `storage` (the zip entry `<prefix>data/<storage>`), in
/// elements of `dtype` (the storage class, e.g. `FloatStorage`).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorLayout {
    pub storage: String,
    pub dtype: String,
    pub offset: usize,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

impl TensorLayout {
    /// Whether the tensor is stored row-major and dense (what burn-store assumes).
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1usize;
        for (&size, &stride) in self.shape.iter().zip(&self.stride).rev() {
            if size != 1 && stride != expected {
                return false;
            }
            expected *= size;
        }
        true
    }

    /// Storage element index of every value, in row-major order of the shape.
    pub fn indices(&self) -> Vec<usize> {
        let n: usize = self.shape.iter().product();
        let mut out = Vec::with_capacity(n);
        let mut idx = vec![0usize; self.shape.len()];
        for _ in 0..n {
            out.push(
                self.offset
                    + idx
                        .iter()
                        .zip(&self.stride)
                        .map(|(i, s)| i * s)
                        .sum::<usize>(),
            );
            for d in (0..idx.len()).rev() {
                idx[d] += 1;
                if idx[d] < self.shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        out
    }
}

#[derive(Debug, Clone)]
enum V {
    None,
    Bool,
    Int(i64),
    Float,
    Str(String),
    Tuple(Vec<V>),
    List(Vec<V>),
    Dict(Vec<(V, V)>),
    Global(String, String),
    Pid(Box<V>),
    Tensor(TensorLayout),
    Mark,
    Other,
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or("data.pkl ends early")?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn le(&mut self, n: usize) -> Result<u64, String> {
        let mut v = 0u64;
        for (i, &b) in self.take(n)?.iter().enumerate() {
            v |= (b as u64) << (8 * i);
        }
        Ok(v)
    }
    fn line(&mut self) -> Result<String, String> {
        let rest = &self.b[self.pos..];
        let n = rest
            .iter()
            .position(|&c| c == b'\n')
            .ok_or("data.pkl: unterminated line")?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }
    fn string(&mut self, n: usize) -> Result<V, String> {
        Ok(V::Str(String::from_utf8_lossy(self.take(n)?).into_owned()))
    }
}

fn as_usizes(v: &V, what: &str) -> Result<Vec<usize>, String> {
    match v {
        V::Tuple(items) | V::List(items) => items
            .iter()
            .map(|i| match i {
                V::Int(n) if *n >= 0 => Ok(*n as usize),
                _ => Err(format!("{what}: expected non-negative integers")),
            })
            .collect(),
        _ => Err(format!("{what}: expected a tuple")),
    }
}

/// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`.
fn rebuild_tensor(args: &[V]) -> Result<V, String> {
    let [pid, offset, size, stride, ..] = args else {
        return Err("_rebuild_tensor_v2: too few arguments".into());
    };
    let V::Pid(pid) = pid else {
        return Err("_rebuild_tensor_v2: no storage".into());
    };
    let V::Tuple(pid) = pid.as_ref() else {
        return Err("_rebuild_tensor_v2: unexpected storage id".into());
    };
    // ('storage', torch.FloatStorage, '0', 'cpu', numel)
    let dtype = match pid.get(1) {
        Some(V::Global(_, name)) => name.clone(),
        Some(V::Str(name)) => name.clone(),
        _ => return Err("_rebuild_tensor_v2: unexpected storage type".into()),
    };
    let storage = match pid.get(2) {
        Some(V::Str(key)) => key.clone(),
        _ => return Err("_rebuild_tensor_v2: unexpected storage key".into()),
    };
    let offset = match offset {
        V::Int(n) if *n >= 0 => *n as usize,
        _ => return Err("_rebuild_tensor_v2: unexpected offset".into()),
    };
    let shape = as_usizes(size, "tensor size")?;
    let stride = as_usizes(stride, "tensor stride")?;
    if shape.len() != stride.len() {
        return Err("_rebuild_tensor_v2: size and stride differ in length".into());
    }
    Ok(V::Tensor(TensorLayout {
        storage,
        dtype,
        offset,
        shape,
        stride,
    }))
}

fn call(callable: V, args: V) -> Result<V, String> {
    let V::Global(module, name) = callable else {
        return Ok(V::Other);
    };
    let args = match args {
        V::Tuple(a) => a,
        _ => return Ok(V::Other),
    };
    Ok(match (module.as_str(), name.as_str()) {
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            rebuild_tensor(&args)?
        }
        ("torch._utils", "_rebuild_parameter")
        | ("torch._utils", "_rebuild_parameter_with_state") => {
            args.into_iter().next().unwrap_or(V::Other)
        }
        ("torch._tensor", "_rebuild_from_type_v2") => {
            // (func, type, args, state)
            let mut it = args.into_iter();
            match (it.next(), it.next(), it.next()) {
                (Some(func), _, Some(inner)) => call(func, inner)?,
                _ => V::Other,
            }
        }
        ("collections", "OrderedDict") => V::Dict(Vec::new()),
        _ => V::Other,
    })
}

/// Runs the pickle program of `data.pkl` far enough to know the value it builds.
fn unpickle(bytes: &[u8]) -> Result<V, String> {
    let mut r = Reader { b: bytes, pos: 0 };
    let mut stack: Vec<V> = Vec::new();
    let mut memo: HashMap<u64, V> = HashMap::new();
    let pop = |stack: &mut Vec<V>| stack.pop().ok_or_else(|| "stack underflow".to_string());
    let to_mark = |stack: &mut Vec<V>| -> Result<Vec<V>, String> {
        let m = stack
            .iter()
            .rposition(|v| matches!(v, V::Mark))
            .ok_or("no mark")?;
        let items = stack.split_off(m + 1);
        stack.pop();
        Ok(items)
    };
    loop {
        let op = r.u8()?;
        match op {
            0x80 => {
                r.u8()?;
            } // PROTO
            0x95 => {
                r.take(8)?;
            } // FRAME
            b'.' => return pop(&mut stack),
            b'(' => stack.push(V::Mark),
            b'}' => stack.push(V::Dict(Vec::new())),
            b']' => stack.push(V::List(Vec::new())),
            b')' => stack.push(V::Tuple(Vec::new())),
            b'N' => stack.push(V::None),
            0x88 | 0x89 => stack.push(V::Bool),
            b'K' => {
                let v = r.le(1)?;
                stack.push(V::Int(v as i64))
            }
            b'M' => {
                let v = r.le(2)?;
                stack.push(V::Int(v as i64))
            }
            b'J' => {
                let v = r.le(4)? as u32 as i32;
                stack.push(V::Int(v as i64))
            }
            0x8a => {
                // LONG1: little-endian two's complement of n bytes.
                let n = r.u8()? as usize;
                let raw = r.take(n)?;
                let mut v: i64 = 0;
                for (i, &b) in raw.iter().enumerate().take(8) {
                    v |= (b as i64) << (8 * i);
                }
                if n > 0 && n < 8 && raw[n - 1] & 0x80 != 0 {
                    v -= 1i64 << (8 * n);
                }
                stack.push(V::Int(v));
            }
            b'I' => {
                let line = r.line()?;
                stack.push(match line.as_str() {
                    "00" | "01" => V::Bool,
                    s => V::Int(s.parse().map_err(|_| format!("bad INT {s:?}"))?),
                });
            }
            b'L' => {
                let line = r.line()?;
                let s = line.trim_end_matches('L');
                stack.push(V::Int(s.parse().unwrap_or(0)));
            }
            b'G' => {
                r.take(8)?;
                stack.push(V::Float);
            }
            b'F' => {
                r.line()?;
                stack.push(V::Float);
            }
            b'X' => {
                let n = r.le(4)? as usize;
                let s = r.string(n)?;
                stack.push(s);
            }
            0x8c => {
                let n = r.u8()? as usize;
                let s = r.string(n)?;
                stack.push(s);
            }
            0x8d => {
                let n = r.le(8)? as usize;
                let s = r.string(n)?;
                stack.push(s);
            }
            b'U' | b'C' => {
                let n = r.u8()? as usize;
                let s = r.string(n)?;
                stack.push(s);
            }
            b'T' | b'B' => {
                let n = r.le(4)? as usize;
                let s = r.string(n)?;
                stack.push(s);
            }
            0x8e => {
                let n = r.le(8)? as usize;
                let s = r.string(n)?;
                stack.push(s);
            }
            b'c' => {
                let module = r.line()?;
                let name = r.line()?;
                stack.push(V::Global(module, name));
            }
            0x93 => {
                let name = pop(&mut stack)?;
                let module = pop(&mut stack)?;
                match (module, name) {
                    (V::Str(m), V::Str(n)) => stack.push(V::Global(m, n)),
                    _ => return Err("STACK_GLOBAL: expected two strings".into()),
                }
            }
            b'q' => {
                let i = r.le(1)?;
                memo.insert(i, stack.last().cloned().ok_or("BINPUT on empty stack")?);
            }
            b'r' => {
                let i = r.le(4)?;
                memo.insert(
                    i,
                    stack.last().cloned().ok_or("LONG_BINPUT on empty stack")?,
                );
            }
            0x94 => {
                let i = memo.len() as u64;
                memo.insert(i, stack.last().cloned().ok_or("MEMOIZE on empty stack")?);
            }
            b'h' => {
                let i = r.le(1)?;
                stack.push(memo.get(&i).cloned().ok_or("BINGET of an unknown memo")?);
            }
            b'j' => {
                let i = r.le(4)?;
                stack.push(
                    memo.get(&i)
                        .cloned()
                        .ok_or("LONG_BINGET of an unknown memo")?,
                );
            }
            b'Q' => {
                let pid = pop(&mut stack)?;
                stack.push(V::Pid(Box::new(pid)));
            }
            b't' => {
                let items = to_mark(&mut stack)?;
                stack.push(V::Tuple(items));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if stack.len() < n {
                    return Err("stack underflow".into());
                }
                let items = stack.split_off(stack.len() - n);
                stack.push(V::Tuple(items));
            }
            b'l' => {
                let items = to_mark(&mut stack)?;
                stack.push(V::List(items));
            }
            b'd' => {
                let items = to_mark(&mut stack)?;
                let mut pairs = Vec::new();
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    pairs.push((k, v));
                }
                stack.push(V::Dict(pairs));
            }
            b'a' => {
                let v = pop(&mut stack)?;
                if let Some(V::List(l)) = stack.last_mut() {
                    l.push(v);
                }
            }
            b'e' => {
                let items = to_mark(&mut stack)?;
                if let Some(V::List(l)) = stack.last_mut() {
                    l.extend(items);
                }
            }
            b's' => {
                let v = pop(&mut stack)?;
                let k = pop(&mut stack)?;
                if let Some(V::Dict(d)) = stack.last_mut() {
                    d.push((k, v));
                }
            }
            b'u' => {
                let items = to_mark(&mut stack)?;
                if let Some(V::Dict(d)) = stack.last_mut() {
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        d.push((k, v));
                    }
                }
            }
            b'R' => {
                let args = pop(&mut stack)?;
                let callable = pop(&mut stack)?;
                stack.push(call(callable, args)?);
            }
            0x81 => {
                // NEWOBJ cls args
                pop(&mut stack)?;
                pop(&mut stack)?;
                stack.push(V::Other);
            }
            b'b' => {
                // BUILD: the state does not change what a dict or tensor holds.
                pop(&mut stack)?;
            }
            b'0' => {
                pop(&mut stack)?;
            }
            b'2' => {
                let top = stack.last().cloned().ok_or("DUP on empty stack")?;
                stack.push(top);
            }
            b'1' => {
                to_mark(&mut stack)?;
            }
            other => return Err(format!("unsupported pickle opcode 0x{other:02x}")),
        }
    }
}

fn flatten(v: &V, path: &mut Vec<String>, out: &mut HashMap<String, TensorLayout>) {
    match v {
        V::Dict(pairs) => {
            for (k, v) in pairs {
                let key = match k {
                    V::Str(s) => s.clone(),
                    V::Int(i) => i.to_string(),
                    _ => continue,
                };
                path.push(key);
                flatten(v, path, out);
                path.pop();
            }
        }
        V::Tensor(t) => {
            out.insert(path.join("."), t.clone());
        }
        V::None | V::Bool | V::Int(_) | V::Float | V::Str(_) => {}
        V::Tuple(_) | V::List(_) | V::Global(..) | V::Pid(_) | V::Mark | V::Other => {}
    }
}

/// Every tensor of a `data.pkl` program by its dotted name (nested dicts joined with `.`, as
/// burn-store names them), with its layout.
pub fn tensor_layouts(data_pkl: &[u8]) -> Result<HashMap<String, TensorLayout>, String> {
    let root = unpickle(data_pkl)?;
    let mut out = HashMap::new();
    flatten(&root, &mut Vec::new(), &mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(shape: &[usize], stride: &[usize], offset: usize) -> TensorLayout {
        TensorLayout {
            storage: "0".into(),
            dtype: "FloatStorage".into(),
            offset,
            shape: shape.to_vec(),
            stride: stride.to_vec(),
        }
    }

    #[test]
    fn contiguity_and_gather_indices_by_hand() {
        assert!(layout(&[2, 3], &[3, 1], 0).is_contiguous());
        // Size-1 dimensions may have any stride.
        assert!(layout(&[1, 3], &[7, 1], 4).is_contiguous());
        // A transposed 3x2 of a 2x3 row-major matrix: element (i, j) at j*3 + i.
        let t = layout(&[3, 2], &[1, 3], 0);
        assert!(!t.is_contiguous());
        assert_eq!(t.indices(), vec![0, 3, 1, 4, 2, 5]);
        // Every other element from offset 1.
        assert_eq!(layout(&[3], &[2], 1).indices(), vec![1, 3, 5]);
        // channels_last [N=1, C=2, H=1, W=2]: strides (4, 1, 4, 2).
        assert_eq!(
            layout(&[1, 2, 1, 2], &[4, 1, 4, 2], 0).indices(),
            vec![0, 2, 1, 3]
        );
    }
}
