import Foundation

/// A Hugging Face safetensors checkpoint: one `model.safetensors`, or shards listed by a
/// `model.safetensors.index.json`.
///
/// Accepts any of:
/// - a folder holding `model.safetensors.index.json` (sharded) or `model.safetensors`, or a
///   single other `*.safetensors` file;
/// - the path of an index file (`*.json`);
/// - the path of one `.safetensors` file.
///
/// A sharded checkpoint is checked against its index when opened: every shard exists, every
/// listed tensor is in its shard, and no shard holds a tensor the index does not list or
/// another shard also holds. Reading a tensor then never touches the index again.
public struct SafetensorsCheckpoint: TensorSource {
    /// The URL the checkpoint was opened from (folder, index or file).
    public let url: URL
    /// The index file, nil for a single-file checkpoint.
    public let indexURL: URL?
    /// The files, in shard-name order (one for a single-file checkpoint).
    public let shards: [SafetensorsFile]
    /// The index's `metadata` object (HF writes `total_size`); empty for a single file.
    public let indexMetadata: JSONObject
    /// Shard order, then data-section order within each shard.
    public let tensorNames: [String]
    /// Tensor name → position in ``shards``.
    private let shardOfTensor: [String: Int]

    /// The name HF gives the index of a sharded checkpoint.
    public static let indexFileName = "model.safetensors.index.json"
    /// The name HF gives a single-file checkpoint.
    public static let singleFileName = "model.safetensors"

    /// Opens a folder, an index file or a single safetensors file.
    ///
    /// - Throws: ``SafetensorsError`` naming the file (folder, index or shard) at fault.
    public init(url: URL) throws {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isFolder) else {
            throw SafetensorsError.cannotOpen(file: url.path, reason: "no such file or folder")
        }
        if isFolder.boolValue {
            let index = url.appendingPathComponent(Self.indexFileName)
            if FileManager.default.fileExists(atPath: index.path) {
                try self.init(index: index, openedAs: url)
            } else {
                try self.init(single: try Self.singleFile(in: url), openedAs: url)
            }
        } else if url.pathExtension.lowercased() == "json" {
            try self.init(index: url, openedAs: url)
        } else {
            try self.init(single: url, openedAs: url)
        }
    }

    private init(single file: URL, openedAs url: URL) throws {
        let shard = try SafetensorsFile(url: file)
        self.url = url
        self.indexURL = nil
        self.shards = [shard]
        self.indexMetadata = JSONObject()
        self.tensorNames = shard.tensorNames
        self.shardOfTensor = Dictionary(uniqueKeysWithValues: shard.tensorNames.map { ($0, 0) })
    }

    private init(index: URL, openedAs url: URL) throws {
        let indexPath = index.path
        let (weightMap, metadata) = try Self.readIndex(index)

        let shardNames = Set(weightMap.values).sorted()
        let folder = index.deletingLastPathComponent()
        var shards: [SafetensorsFile] = []
        for name in shardNames {
            let shardURL = folder.appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: shardURL.path) else {
                throw SafetensorsError.shardMissing(index: indexPath, shard: name)
            }
            shards.append(try SafetensorsFile(url: shardURL))
        }
        let position = Dictionary(uniqueKeysWithValues: shardNames.enumerated().map { ($1, $0) })

        // Every listed tensor is where the index says.
        for (tensor, shardName) in weightMap.sorted(by: { $0.key < $1.key }) {
            guard let p = position[shardName], shards[p].info(of: tensor) != nil else {
                throw SafetensorsError.tensorMissingFromShard(
                    index: indexPath, tensor: tensor, shard: shardName)
            }
        }
        // Every stored tensor is listed, and listed for the shard that holds it.
        var names: [String] = []
        var shardOfTensor: [String: Int] = [:]
        for (p, shard) in shards.enumerated() {
            for tensor in shard.tensorNames {
                guard let listed = weightMap[tensor] else {
                    throw SafetensorsError.tensorNotInIndex(
                        index: indexPath, tensor: tensor, shard: shardNames[p])
                }
                guard listed == shardNames[p] else {
                    throw SafetensorsError.duplicateTensor(
                        index: indexPath, tensor: tensor, firstShard: listed,
                        secondShard: shardNames[p])
                }
                names.append(tensor)
                shardOfTensor[tensor] = p
            }
        }

        self.url = url
        self.indexURL = index
        self.shards = shards
        self.indexMetadata = metadata
        self.tensorNames = names
        self.shardOfTensor = shardOfTensor
    }

    /// The file that holds a tensor, or nil if there is no such tensor.
    public func file(containing name: String) -> SafetensorsFile? {
        shardOfTensor[name].map { shards[$0] }
    }

    /// Where a tensor lives in its file, or nil if there is no such tensor.
    public func info(of name: String) -> SafetensorsTensorInfo? {
        file(containing: name)?.info(of: name)
    }

    public func shape(of name: String) -> [Int]? {
        file(containing: name)?.shape(of: name)
    }

    public func typeName(of name: String) -> String? {
        file(containing: name)?.typeName(of: name)
    }

    public func readFloats(
        _ name: String, into destination: UnsafeMutableBufferPointer<Float>
    )
        throws
    {
        guard let file = file(containing: name) else {
            throw SafetensorsError.tensorNotFound(file: url.path, tensor: name)
        }
        try file.readFloats(name, into: destination)
    }

    /// A tensor's values as a new `[Float]`; see ``SafetensorsFile/readFloats(_:into:)``.
    public func readFloats(_ name: String) throws -> [Float] {
        guard let file = file(containing: name) else {
            throw SafetensorsError.tensorNotFound(file: url.path, tensor: name)
        }
        return try file.readFloats(name)
    }

    // MARK: Locating files

    /// `model.safetensors`, else the only `*.safetensors` in the folder.
    private static func singleFile(in folder: URL) throws -> URL {
        let single = folder.appendingPathComponent(singleFileName)
        if FileManager.default.fileExists(atPath: single.path) {
            return single
        }
        let contents: [String]
        do {
            contents = try FileManager.default.contentsOfDirectory(atPath: folder.path)
        } catch {
            throw SafetensorsError.cannotOpen(file: folder.path, reason: "\(error)")
        }
        let candidates = contents.filter { $0.hasSuffix(".safetensors") }.sorted()
        switch candidates.count {
        case 1:
            return folder.appendingPathComponent(candidates[0])
        case 0:
            throw SafetensorsError.noCheckpoint(
                folder: folder.path,
                reason: "neither \(indexFileName) nor any .safetensors file")
        default:
            let list = candidates.joined(separator: ", ")
            throw SafetensorsError.noCheckpoint(
                folder: folder.path,
                reason: "\(candidates.count) .safetensors files (\(list)) but no "
                    + "\(indexFileName) saying how they go together")
        }
    }

    /// Reads `weight_map` (tensor → shard file name) and `metadata` from an index.
    private static func readIndex(_ index: URL) throws -> ([String: String], JSONObject) {
        let path = index.path
        let data: Data
        do {
            data = try MappedFile.contents(of: index)
        } catch {
            throw SafetensorsError.cannotOpen(file: path, reason: error.detail)
        }
        let json: JSONValue
        do {
            json = try JSONValue.parse(data)
        } catch {
            throw SafetensorsError.invalidIndex(file: path, reason: "not valid JSON: \(error)")
        }
        guard case .object(let root) = json else {
            throw SafetensorsError.invalidIndex(
                file: path, reason: "expected a JSON object, found \(json.kindName)")
        }
        guard case .object(let entries)? = root["weight_map"] else {
            throw SafetensorsError.invalidIndex(file: path, reason: "missing 'weight_map' object")
        }
        var weightMap: [String: String] = [:]
        for (tensor, value) in entries {
            guard case .string(let shard) = value else {
                throw SafetensorsError.invalidIndex(
                    file: path,
                    reason: "weight_map entry for '\(tensor)' must be a file name, found "
                        + value.kindName)
            }
            // Shards sit next to the index; a path that leaves the folder is not a shard name.
            guard !shard.isEmpty, !shard.hasPrefix("/"),
                !shard.split(separator: "/").contains("..")
            else {
                throw SafetensorsError.invalidIndex(
                    file: path,
                    reason: "weight_map entry for '\(tensor)' names '\(shard)', "
                        + "which is not a file in the index's folder")
            }
            // Distinct JSON keys that Swift's `String` equates ("é", "e\u{301}").
            guard weightMap.updateValue(shard, forKey: tensor) == nil else {
                throw SafetensorsError.invalidIndex(
                    file: path,
                    reason: "duplicate tensor name '\(tensor)' (canonically equivalent spellings)")
            }
        }
        var metadata = JSONObject()
        switch root["metadata"] {
        case .object(let object)?: metadata = object
        case nil, .null?: break
        case let other?:
            throw SafetensorsError.invalidIndex(
                file: path, reason: "'metadata' must be an object, found \(other.kindName)")
        }
        return (weightMap, metadata)
    }
}
