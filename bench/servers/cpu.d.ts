/** Spins a xorshift generator `iterations` times: pure CPU, the same work inline or in a worker thread. */
export declare function burn(iterations: number): number;
