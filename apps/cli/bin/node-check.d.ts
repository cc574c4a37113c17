// Types for node-check.js (plain JavaScript: it runs before any loader), for its test.
export declare const NODE_FLOOR: string;
export declare const NODE_API_FLOOR: number;
export declare function nodeProblem(versions: { node: string; napi?: string }): string | null;
